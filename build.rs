//! Build script: bake the libtorch library folder into the binary's run path and
//! record the git commit, so `uorch` runs and reports itself with no environment set.
use std::process::Command;

fn main() {
    // torch-sys (links = "tch") exports the folder it linked against.
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys exports DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-env=UORCH_BUILD_LIBTORCH_LIB={lib}");
    build_cpp(std::path::Path::new(&lib));
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let suffix = if dirty { "-dirty" } else { "" };
    println!("cargo:rustc-env=UORCH_GIT_COMMIT={commit}{suffix}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
    println!("cargo:rerun-if-changed=build.rs");
}

/// The C++ parts (csrc/), one static library each, declared in src/ffi/: the
/// shim over c10d's TCPStore and Gloo process groups (Gloo's headers come from
/// Debian's libgloo-dev, which set-up installs), the recomputation autograd
/// function, the post-accumulate-grad hooks and the fused AdamW kernel; the rest of the headers from the libtorch we link against.
fn build_cpp(lib: &std::path::Path) {
    let include = lib.parent().expect("libtorch lib has a parent").join("include");
    // (source, library, the define it needs)
    let parts = [
        ("csrc/c10d_shim.cpp", "uorch_c10d", Some("USE_C10D_GLOO")),
        ("csrc/recompute.cpp", "uorch_recompute", None),
        ("csrc/grad_hooks.cpp", "uorch_grad_hooks", None),
        ("csrc/fused_adamw.cpp", "uorch_fused_adamw", None),
    ];
    for (file, library, define) in parts {
        println!("cargo:rerun-if-changed={file}");
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .file(file)
            .include(&include)
            .include(include.join("torch/csrc/api/include"))
            .flag("-std=c++17")
            .define("_GLIBCXX_USE_CXX11_ABI", "1")
            .warnings(false);
        if let Some(d) = define {
            build.define(d, None);
        }
        build.compile(library);
    }
    println!("cargo:rerun-if-changed=csrc/uorch_c10d.h");
}
