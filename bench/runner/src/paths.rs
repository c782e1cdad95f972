//! Paths of the modules and programs that the runner measures.

use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};

/// The files of one benchmark run.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The workspace root, which contains `dist/` and `kong/`.
    pub root: PathBuf,
    /// The compiled rate-limit filter, `dist/sliding_window_rate_limit.wasm`.
    pub filter: PathBuf,
    /// The no-op fixture module.
    pub noop: PathBuf,
    /// The floor fixture module.
    pub floor: PathBuf,
    /// The folder of this program, which also holds the release builds of
    /// `local-gateway` and `model-server`.
    pub bin_dir: PathBuf,
}

impl Paths {
    /// Finds the files of a release build of this workspace.
    ///
    /// The fixtures are read from `$CARGO_TARGET_DIR` when it is set, else
    /// from the workspace's `target/`.
    pub fn discover() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let root = root
            .canonicalize()
            .context(|| format!("workspace root {} not found", root.display()))?;
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let fixtures = target.join("wasm32-wasip1/release");
        let exe = std::env::current_exe().context(|| "finding this program's path".to_owned())?;
        let bin_dir = exe
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| Error::new(format!("{} has no parent folder", exe.display())))?;
        Ok(Self {
            filter: local_gateway::filter_wasm_path(),
            noop: fixtures.join("bench_fixture_noop.wasm"),
            floor: fixtures.join("bench_fixture_floor.wasm"),
            root,
            bin_dir,
        })
    }

    /// Fails with the build command when a module is missing.
    pub fn check_modules(&self) -> Result<()> {
        let missing: Vec<String> = [&self.filter, &self.noop, &self.floor]
            .into_iter()
            .filter(|path| !path.is_file())
            .map(|path| path.display().to_string())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::new(format!(
            "missing {}; build them with ./build.sh bench, or with ./build.sh and \
             cargo build --release --target wasm32-wasip1 -p bench-fixture-noop -p bench-fixture-floor",
            missing.join(", ")
        )))
    }
}
