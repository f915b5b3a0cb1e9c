//! Issue 12: the container and storage layers against hostile or cut
//! requests. One module per finding family; each test failed before its fix.

mod cancel;
mod connections;
mod containers;
mod devices;
mod fd_limit;
mod leftovers;
mod limits;
mod paths;
