//! Release builds of the `warden` binary lay out the functions it runs (start, the request
//! path, the writer threads) side by side, in the order `link-order.txt` names them.
//!
//! The kernel maps a program's code 64 KiB at a time around each page fault, and the few MiB
//! of its 33 MiB of machine code a running Warden executes are spread over nearly every 64 KiB
//! of it: 29 MiB resident under the load harness. Gathered, 8.5 MiB. The file comes from
//! `benches/link-order` (valgrind's callgrind on the release binary); a name that no longer
//! exists only leaves its function where it was, so a stale file costs memory, never
//! correctness.
//!
//! Only LLD reads the file: the linker of `x86_64-unknown-linux-gnu` since Rust 1.90. With
//! another target or linker, or `WARDEN_LINK_ORDER=off`, the binary links as before.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=WARDEN_LINK_ORDER");
    let manifest = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let order = Path::new(&manifest).join("link-order.txt");
    if applies() && order.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=warden=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=warden=-Wl,--no-warn-symbol-ordering");
    }
}

/// A release build for x86-64 Linux (glibc) with Rust's own LLD, and not turned off.
fn applies() -> bool {
    let var = |name: &str| env::var(name).unwrap_or_default();
    let own_linker = env::var_os("RUSTC_LINKER").is_none()
        && !["linker", "link-self-contained", "fuse-ld"]
            .iter()
            .any(|flag| var("CARGO_ENCODED_RUSTFLAGS").contains(flag));
    var("PROFILE") == "release"
        && var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && own_linker
        && var("WARDEN_LINK_ORDER") != "off"
}
