//! Build script: records the git revision for `rtconfig --version`.
//!
//! The revision is, in order: `RTCONFIG_GIT_REVISION` from the build environment (the Dockerfile's
//! `GIT_REVISION` build argument, a release pipeline, or a tarball without `.git`), else
//! `git rev-parse --short=12 HEAD` when the sources are a git checkout, else `unknown`.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Keeps a revision printable and short: hex digits, letters, `.`, `-`, `_`, `+` only.
fn clean(revision: &str) -> Option<String> {
    let revision = revision.trim();
    let ok = !revision.is_empty()
        && revision.len() <= 64
        && revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    ok.then(|| revision.to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=RTCONFIG_GIT_REVISION");
    // `refinery::embed_migrations!` reads this folder at compile time: a new or changed
    // migration must rebuild the crate even when no Rust file changed.
    println!("cargo:rerun-if-changed=migrations");
    let from_env = std::env::var("RTCONFIG_GIT_REVISION")
        .ok()
        .and_then(|r| clean(&r));
    let revision = from_env.or_else(|| {
        // Rebuild when HEAD moves: HEAD itself, the branch it names, and packed refs (these
        // paths also work in a `git worktree`, whose HEAD lives outside the checkout).
        let manifest = std::env::var("CARGO_MANIFEST_DIR").ok()?;
        if !Path::new(&manifest).join(".git").exists() {
            return None;
        }
        // Only paths that exist (cargo reruns a build script whose `rerun-if-changed` path is
        // missing on every build): a branch whose ref is packed is watched through its folder,
        // where the next commit writes it.
        let watch = |p: &str| {
            let path = Path::new(&manifest).join(p);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            } else if let Some(dir) = path.parent().filter(|d| d.exists()) {
                println!("cargo:rerun-if-changed={}", dir.display());
            }
        };
        for path in ["HEAD", "packed-refs"] {
            if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                watch(&p);
            }
        }
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            if let Some(p) = git(&["rev-parse", "--git-path", &branch]) {
                watch(&p);
            }
        }
        git(&["rev-parse", "--short=12", "HEAD"]).and_then(|r| clean(&r))
    });
    let revision = revision.unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=RTCONFIG_GIT_REVISION={revision}");
    release_link_args();
}

/// Release builds of the `rtconfig` binary for x86_64 Linux are linked for a small idle RSS
/// (docs/PERFORMANCE.md, "Idle RSS: the binary's pages"), each part only where it is safe:
///
/// - `link/sidecar-startup.ld` (written by `scripts/startup-order`) puts the functions a sidecar
///   runs from exec to idle first in `.text`, so start-up faults in a few contiguous pages
///   instead of 64–128 KiB page cache neighbourhoods scattered over the whole multi-role binary.
///   It only orders input sections: a stale or missing entry costs memory, never correctness.
///   Used with the toolchain's own linker (rust-lld, the default since Rust 1.90, or GNU ld),
///   which read its `INSERT BEFORE`; left out when a linker is configured (`linker = …`, or
///   `-fuse-ld=`/`-C linker=` in the rustflags: mold and gold do not read it), or with
///   `RTCONFIG_NO_STARTUP_ORDER=1`.
/// - RELR relocations (`-z pack-relative-relocs`): the ~20,000 relative relocations of the PIE
///   in a few KiB instead of 480 KiB of `.rela.dyn`, which the dynamic loader reads at every
///   exec. A binary with them starts only on glibc >= 2.36, so they are used when the build
///   runs on the system it builds for (host = target: `cargo install`, the image's build
///   stage) and that system's glibc is 2.36 or later; never on an older one (Ubuntu 22.04,
///   RHEL 9). `RTCONFIG_RELR=1` forces them (a cross build for a known glibc),
///   `RTCONFIG_NO_RELR=1` leaves them out.
fn release_link_args() {
    for var in [
        "RTCONFIG_NO_STARTUP_ORDER",
        "RTCONFIG_NO_RELR",
        "RTCONFIG_RELR",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let link = Path::new(&var("CARGO_MANIFEST_DIR")).join("link");
    let script = link.join("sidecar-startup.ld");
    // Only a path that exists (cargo reruns a build script whose `rerun-if-changed` path is
    // missing on every build); the folder, so that a script written later is seen too.
    if link.exists() {
        println!("cargo:rerun-if-changed={}", link.display());
    }
    if var("TARGET") != "x86_64-unknown-linux-gnu" || var("PROFILE") != "release" {
        return;
    }
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    let own_linker = std::env::var_os("RUSTC_LINKER").is_none()
        && !flags.contains("fuse-ld=")
        && !flags.contains("linker=")
        && !flags.contains("linker-flavor");
    if own_linker && std::env::var_os("RTCONFIG_NO_STARTUP_ORDER").is_none() && script.exists() {
        println!(
            "cargo:rustc-link-arg-bin=rtconfig=-Wl,-T,{}",
            script.display()
        );
    }
    let relr = if std::env::var_os("RTCONFIG_NO_RELR").is_some() {
        false
    } else if std::env::var_os("RTCONFIG_RELR").is_some() {
        true
    } else {
        var("HOST") == var("TARGET") && host_glibc().is_some_and(|v| v >= (2, 36))
    };
    if relr {
        println!("cargo:rustc-link-arg-bin=rtconfig=-Wl,-z,pack-relative-relocs");
    }
}

/// The build machine's glibc version (`getconf GNU_LIBC_VERSION` prints `glibc 2.36`); `None`
/// when it cannot tell (another libc, no `getconf`).
fn host_glibc() -> Option<(u32, u32)> {
    let out = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    parse_glibc(&text)
}

fn parse_glibc(text: &str) -> Option<(u32, u32)> {
    let version = text.trim().strip_prefix("glibc ")?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()?;
    Some((major, minor))
}
