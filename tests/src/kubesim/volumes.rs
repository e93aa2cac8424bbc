//! Where a simulated cluster keeps volume data on the host: every PersistentVolume kubesim
//! provisions is a folder, every CSI snapshot a frozen copy of one. Controllers that provision,
//! snapshot or clone volumes and everything that runs a pod's command as a local process (exec,
//! data-mover pods) resolve folders through this one place.

use std::path::{Path, PathBuf};

/// The CSI driver name kubesim's provisioner and snapshotter answer to.
pub const CSI_DRIVER: &str = "csi.kubesim.stowage.io";

/// The host folders of one cluster's volumes and snapshots, under `<cluster folder>/`.
#[derive(Debug, Clone)]
pub struct VolumeFolders {
    root: PathBuf,
}

impl VolumeFolders {
    /// Folders under `cluster_folder` (the folder a cluster keeps its CA and state in).
    pub fn new(cluster_folder: &Path) -> Self {
        Self {
            root: cluster_folder.to_path_buf(),
        }
    }

    /// The folder holding the content of PersistentVolume `pv`: `volumes/<pv>`.
    pub fn volume(&self, pv: &str) -> PathBuf {
        self.root.join("volumes").join(pv)
    }

    /// The folder of pod `uid` when its containers run as local processes: its emptyDir,
    /// configMap, secret and projected volumes live in `pods/<uid>/volumes/<volume>`.
    pub fn pod(&self, uid: &str) -> PathBuf {
        self.root.join("pods").join(uid)
    }

    /// The folder holding the frozen copy behind VolumeSnapshotContent `content`:
    /// `snapshots/<content>`.
    pub fn snapshot(&self, content: &str) -> PathBuf {
        self.root.join("snapshots").join(content)
    }
}
