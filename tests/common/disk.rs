//! A small ext4 file system on a loop device, for a disk that fills up (tmpfs would not
//! exercise fsync). Needs root and `mount`, as this machine's tests have.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LoopDisk {
    dir: tempfile::TempDir,
    mount: PathBuf,
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("running {program}: {e}");
        });
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl LoopDisk {
    /// Makes and mounts a file system of `mib` MiB.
    pub fn new(mib: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let file = std::fs::File::create(&image).unwrap();
        file.set_len(mib << 20).unwrap();
        run(
            "mkfs.ext4",
            &["-q", "-F", "-m", "0", image.to_str().unwrap()],
        );
        run(
            "mount",
            &[
                "-o",
                "loop",
                image.to_str().unwrap(),
                mount.to_str().unwrap(),
            ],
        );
        Self { dir, mount }
    }

    pub fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = &self.dir;
    }
}
