//! The netlink listener with the real kernel: writing "add" to a device's
//! sysfs `uevent` file makes the kernel send that device's "add" event
//! again, which is what a hot-plug sends.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use kata_agent::uevent::{self, Matcher, Uevent};
use test_support::loopdev::Loop;

struct Devpath(String);

impl fmt::Display for Devpath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device {}", self.0)
    }
}

impl Matcher for Devpath {
    fn subsystem(&self) -> &str {
        "block"
    }
    fn matches(&self, ev: &Uevent) -> bool {
        ev.devpath == self.0
    }
}

/// A waiter whose sysfs shows nothing (an empty fake tree) still gets the
/// device from the kernel's event, within a fraction of its timeout.
#[test]
fn a_kernel_add_event_ends_the_wait() {
    test_support::require_root!();
    let dir = test_support::tempdir();
    let Some(disk) = Loop::new(dir.path()) else {
        return;
    };
    let class = Path::new("/sys/class/block").join(disk.name());
    let real = class.canonicalize().expect("the loop device in sysfs");
    let devpath = format!(
        "/{}",
        real.strip_prefix("/sys").expect("below /sys").display()
    );
    let empty = test_support::tempdir();
    let trigger = class.join("uevent");
    let start = Instant::now();
    let poker = std::thread::spawn(move || {
        // Repeated: the first may come before the waiter subscribed.
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            if std::fs::write(&trigger, "add").is_err() {
                return;
            }
        }
    });
    let found = uevent::wait(
        &Devpath(devpath.clone()),
        empty.path(),
        Duration::from_secs(10),
    );
    let found = found.expect("the kernel's add event");
    assert_eq!(found.devpath, devpath);
    assert_eq!(found.devname, disk.name());
    assert_eq!(found.subsystem, "block");
    assert_eq!(
        (found.major, found.minor),
        (Some(disk.numbers().0), Some(disk.numbers().1))
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    drop(poker);
}
