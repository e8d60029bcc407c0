//! Each node's data directory on a file system of its own, so one node's
//! disk can fill up while the others' do not: an ext4 image (sparse, no
//! blocks reserved for root, which the nodes run as) on a loop device,
//! created and mounted by the tool and unmounted when the seed ends.
//!
//! The disk-full fault fills the node's file system with a ballast file
//! (`fallocate`, so no data is written) and its repair deletes it. The
//! power-loss fault cuts the image off its writes at one instant
//! ([`Volume::power_cut`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Size of each node's file system: plenty for a run, sparse on the host.
const SIZE_MB: u64 = 1024;

/// One node's mounted file system.
#[derive(Debug)]
pub(crate) struct Volume {
    image: PathBuf,
    mount: PathBuf,
    /// The loop device while attached.
    device: Option<String>,
    mounted: bool,
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {} {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Volume {
    /// Creates the image `image` and mounts it on `mount` (created).
    pub(crate) fn create(image: &Path, mount: &Path) -> Result<Volume> {
        std::fs::create_dir_all(mount).with_context(|| format!("creating {}", mount.display()))?;
        let file = std::fs::File::create(image).with_context(|| format!("creating {}", image.display()))?;
        file.set_len(SIZE_MB << 20)?;
        drop(file);
        run(Command::new("mkfs.ext4").args(["-q", "-F", "-m", "0"]).arg(image))?;
        let mut v = Volume { image: image.to_path_buf(), mount: mount.to_path_buf(), device: None, mounted: false };
        v.attach()?;
        Ok(v)
    }

    /// Bytes the nodes (not root) may still write.
    fn free_bytes(&self) -> Result<u64> {
        let st =
            nix::sys::statvfs::statvfs(&self.mount).with_context(|| format!("statvfs {}", self.mount.display()))?;
        Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
    }

    fn ballast(&self) -> PathBuf {
        self.mount.join("ballast")
    }

    /// Fills the file system: every free block goes to the ballast file.
    /// Returns the bytes it took.
    pub(crate) fn fill(&self) -> Result<u64> {
        let mut size = self.free_bytes()?;
        // The ballast's own extent blocks come out of the same space: shrink
        // until it fits, then take any remaining block in a second file.
        while size > 0 {
            if run(Command::new("fallocate").arg("-l").arg(size.to_string()).arg(self.ballast())).is_ok() {
                let rest = self.mount.join("ballast-rest");
                let left = self.free_bytes()?;
                if left > 0 {
                    let _ = run(Command::new("fallocate").arg("-l").arg(left.to_string()).arg(rest));
                }
                return Ok(size + left);
            }
            size = size.saturating_sub(1 << 20);
        }
        bail!("could not fill {}", self.mount.display())
    }

    /// Deletes the ballast: the space is back.
    pub(crate) fn free(&self) -> Result<()> {
        for f in [self.ballast(), self.mount.join("ballast-rest")] {
            match std::fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", f.display())),
            }
        }
        Ok(())
    }

    /// A power cut, at the block level (the node's process must be dead):
    /// the image is made immutable, so from this instant every write the
    /// node's file system sends to its disk fails — pages not yet written
    /// out never arrive, whatever was fsynced already has. The file system
    /// is then unmounted (its writes failing), the image made writable
    /// again and mounted afresh: ext4 replays its journal as after a real
    /// power loss, and the node finds its files as a power loss leaves them.
    pub(crate) fn power_cut(&mut self) -> Result<()> {
        run(Command::new("chattr").arg("+i").arg(&self.image))?;
        let cut = self.unmount();
        run(Command::new("chattr").arg("-i").arg(&self.image))?;
        cut?;
        self.attach()
    }

    fn attach(&mut self) -> Result<()> {
        // Direct I/O to the image: what the node's file system writes out
        // reaches the image at once, not the host's page cache, so the
        // image holds exactly what the node's disk would (the power cut).
        let out = Command::new("losetup")
            .args(["--find", "--show", "--direct-io=on"])
            .arg(&self.image)
            .output()
            .context("running losetup")?;
        if !out.status.success() {
            bail!("losetup {}: {}", self.image.display(), String::from_utf8_lossy(&out.stderr).trim());
        }
        let device = String::from_utf8_lossy(&out.stdout).trim().to_string();
        run(Command::new("mount").arg(&device).arg(&self.mount))?;
        self.device = Some(device);
        self.mounted = true;
        Ok(())
    }

    /// Unmounts it (the image stays, with the node's files, for a
    /// post-mortem).
    pub(crate) fn unmount(&mut self) -> Result<()> {
        if self.mounted {
            run(Command::new("umount").arg(&self.mount))
                .with_context(|| format!("unmounting {} ({})", self.mount.display(), self.image.display()))?;
            self.mounted = false;
        }
        if let Some(d) = self.device.take() {
            run(Command::new("losetup").arg("-d").arg(&d))?;
        }
        Ok(())
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        if self.mounted {
            // Lazy: a process still holding a file must not keep it mounted.
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
        if let Some(d) = &self.device {
            let _ = Command::new("losetup").arg("-d").arg(d).status();
        }
    }
}
