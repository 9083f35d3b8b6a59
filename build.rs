//! Installs the playground's browser assets (GraphiQL, React, graphql-ws), pinned by
//! `web-playground/package-lock.json`, with `npm ci` when they are missing or older than the
//! lock file, so `src/http/playground.rs` can embed them: the playground at `/` then loads
//! nothing from another host.

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|meta| meta.modified()).ok()
}

fn main() {
    let dir = Path::new("web-playground");
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules/.package-lock.json");
    println!("cargo:rerun-if-changed={}", lock.display());
    println!("cargo:rerun-if-changed={}", installed.display());
    if matches!((modified(&installed), modified(&lock)), (Some(done), Some(wanted)) if done >= wanted)
    {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "`npm ci` in web-playground failed ({status}): the playground's assets come from \
             the npm registry, pinned by web-playground/package-lock.json"
        ),
        Err(error) => panic!(
            "building oms needs npm (Node.js 18 or later) to install the playground's assets \
             from web-playground/package-lock.json: {error}"
        ),
    }
}
