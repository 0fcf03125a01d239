//! Where uorch's own files live: the project folder (set-up caches, assets) and
//! the default output root.

use std::path::{Path, PathBuf};

/// Marker that identifies a uorch checkout.
const MARKER: &str = "scripts/setup.sh";

/// The uorch project folder: `$UORCH_HOME` if set, else the checkout that holds
/// the running binary (`<root>/target/<profile>/uorch`), else the current folder.
pub fn project_root() -> PathBuf {
    if let Some(home) = std::env::var_os("UORCH_HOME") {
        return PathBuf::from(home);
    }
    let from_exe = std::env::current_exe().ok().and_then(|exe| find_marker_upwards(&exe));
    let from_cwd = std::env::current_dir().ok().and_then(|d| find_marker_upwards(&d));
    from_exe.or(from_cwd).or_else(|| std::env::current_dir().ok()).unwrap_or_else(|| ".".into())
}

fn find_marker_upwards(start: &Path) -> Option<PathBuf> {
    start.ancestors().find(|d| d.join(MARKER).is_file()).map(Path::to_path_buf)
}

/// Real datasets and models fetched by set-up.
pub fn assets_dir() -> PathBuf {
    project_root().join("assets")
}

/// MovieLens-100K in RecBole's atomic-file layout, as set-up extracts it.
pub fn movielens_100k_dir() -> PathBuf {
    assets_dir().join("ml-100k")
}

/// The packaged SmolLM2-135M-Instruct GGUF.
pub fn smollm2_gguf() -> PathBuf {
    assets_dir().join("smollm2").join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Where a NCCL plugin built by `scripts/build_nccl_plugin.sh` is looked for.
pub fn nccl_plugin() -> PathBuf {
    if let Some(p) = std::env::var_os("UORCH_NCCL_PLUGIN") {
        return PathBuf::from(p);
    }
    project_root().join(".uorch").join("plugins").join("libuorch_nccl.so")
}

/// The set-up's Python venv holding the real TensorBoard.
pub fn venv_python() -> PathBuf {
    project_root().join(".uorch").join("venv").join("bin").join("python")
}

/// The command that opens a log root in that venv's TensorBoard.
pub fn tensorboard_command(logdir: &Path) -> String {
    format!("{} --logdir {}", venv_python().with_file_name("tensorboard").display(), logdir.display())
}
