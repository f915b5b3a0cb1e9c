//! Hot-plugged devices: the kernel's uevents reaching a waiter, each
//! driver finding its disk (a real loop device behind a fake sysfs tree
//! laid out as the guest's kernel lays it out), the container's spec
//! renumbered, disk storages mounted with their fsGroup, and
//! CreateContainer with `devices` and disk storages over ttRPC.

mod drivers;
mod rpc;
mod uevent;
