//! cgroups: the manager on v1 and v2 hierarchies, the resources RPCs'
//! answers, and the resources RPCs on real containers.

mod containers;
mod rpc;
mod v1;
mod v2;
