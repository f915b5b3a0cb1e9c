fn main() {
    println!(
        "kata-agent {} machine={}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
}
