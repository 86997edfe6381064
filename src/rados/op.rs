//! Compound operations on one object, as RADOS runs them: every step of a [`WriteOp`]
//! applies or none does (an assert that fails cancels the whole op), and a [`ReadOp`]
//! reads a consistent view. The steps are plain owned data so that both backends (and the
//! fault-injection layer) interpret the very same description.

use std::collections::BTreeMap;
use std::time::SystemTime;

use bytes::Bytes;

use super::RadosOp;

/// Snapshot id; `NOSNAP` means the object's head.
pub type SnapId = u64;
pub const NOSNAP: SnapId = 0xffff_ffff_ffff_fffe;

/// The snapshot context a write carries: the OSD clones an object on the first write after
/// a snapshot in `snaps` was taken, which is what keeps RBD snapshots stable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SnapContext {
    pub seq: SnapId,
    /// Existing snapshot ids, newest first.
    pub snaps: Vec<SnapId>,
}

/// Comparison used by `omap_cmp` / `cmpxattr` (values as in librados' `LIBRADOS_CMPXATTR_OP_*`).
/// A failed omap comparison cancels the op with `ECANCELED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq = 1,
    Ne = 2,
    Gt = 3,
    Gte = 4,
    Lt = 5,
    Lte = 6,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteStep {
    /// Create the object; `exclusive` fails with `EEXIST` when it exists.
    Create {
        exclusive: bool,
    },
    Write {
        offset: u64,
        data: Bytes,
    },
    WriteFull(Bytes),
    Append(Bytes),
    Truncate(u64),
    Zero {
        offset: u64,
        len: u64,
    },
    Remove,
    OmapSet(BTreeMap<String, Bytes>),
    OmapRmKeys(Vec<String>),
    OmapClear,
    SetXattr {
        name: String,
        value: Bytes,
    },
    RmXattr(String),
    /// A cls method with write rights; its output is not returned (as in librados' C API).
    Exec {
        class: String,
        method: String,
        input: Bytes,
    },
    AssertExists,
    AssertVersion(u64),
    OmapCmp {
        key: String,
        op: CmpOp,
        value: Bytes,
    },
    CmpXattr {
        name: String,
        op: CmpOp,
        value: Bytes,
    },
}

/// An atomic write operation on one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOp {
    pub steps: Vec<WriteStep>,
    /// Snapshot context of the write; `None` writes without one (no clone is made).
    pub snap_context: Option<SnapContext>,
}

impl WriteOp {
    pub fn new() -> Self {
        Self::default()
    }
    /// How both backends name it in errors and metrics: a cls method call is `exec`.
    pub fn kind(&self) -> RadosOp {
        let exec = self
            .steps
            .iter()
            .any(|s| matches!(s, WriteStep::Exec { .. }));
        if exec { RadosOp::Exec } else { RadosOp::Write }
    }
    pub fn snap_context(mut self, snapc: SnapContext) -> Self {
        self.snap_context = Some(snapc);
        self
    }
    fn step(mut self, step: WriteStep) -> Self {
        self.steps.push(step);
        self
    }
    pub fn create(self, exclusive: bool) -> Self {
        self.step(WriteStep::Create { exclusive })
    }
    pub fn write(self, offset: u64, data: impl Into<Bytes>) -> Self {
        self.step(WriteStep::Write {
            offset,
            data: data.into(),
        })
    }
    pub fn write_full(self, data: impl Into<Bytes>) -> Self {
        self.step(WriteStep::WriteFull(data.into()))
    }
    pub fn append(self, data: impl Into<Bytes>) -> Self {
        self.step(WriteStep::Append(data.into()))
    }
    pub fn truncate(self, size: u64) -> Self {
        self.step(WriteStep::Truncate(size))
    }
    pub fn zero(self, offset: u64, len: u64) -> Self {
        self.step(WriteStep::Zero { offset, len })
    }
    pub fn remove(self) -> Self {
        self.step(WriteStep::Remove)
    }
    pub fn omap_set<K: Into<String>, V: Into<Bytes>>(
        self,
        kv: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let map = kv.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self.step(WriteStep::OmapSet(map))
    }
    pub fn omap_rm_keys<K: Into<String>>(self, keys: impl IntoIterator<Item = K>) -> Self {
        self.step(WriteStep::OmapRmKeys(
            keys.into_iter().map(Into::into).collect(),
        ))
    }
    pub fn omap_clear(self) -> Self {
        self.step(WriteStep::OmapClear)
    }
    pub fn set_xattr(self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.step(WriteStep::SetXattr {
            name: name.into(),
            value: value.into(),
        })
    }
    pub fn rm_xattr(self, name: impl Into<String>) -> Self {
        self.step(WriteStep::RmXattr(name.into()))
    }
    pub fn exec(self, class: &str, method: &str, input: impl Into<Bytes>) -> Self {
        self.step(WriteStep::Exec {
            class: class.into(),
            method: method.into(),
            input: input.into(),
        })
    }
    pub fn assert_exists(self) -> Self {
        self.step(WriteStep::AssertExists)
    }
    pub fn assert_version(self, version: u64) -> Self {
        self.step(WriteStep::AssertVersion(version))
    }
    pub fn omap_cmp(self, key: impl Into<String>, op: CmpOp, value: impl Into<Bytes>) -> Self {
        self.step(WriteStep::OmapCmp {
            key: key.into(),
            op,
            value: value.into(),
        })
    }
    pub fn cmp_xattr(self, name: impl Into<String>, op: CmpOp, value: impl Into<Bytes>) -> Self {
        self.step(WriteStep::CmpXattr {
            name: name.into(),
            op,
            value: value.into(),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadStep {
    /// `len == 0` reads to the end of the object.
    Read {
        offset: u64,
        len: u64,
    },
    Stat,
    /// Up to `max` pairs with keys after `start_after` that begin with `prefix`.
    OmapGetVals {
        start_after: String,
        prefix: String,
        max: u64,
    },
    OmapGetKeys {
        start_after: String,
        max: u64,
    },
    OmapGetValsByKeys(Vec<String>),
    GetXattr(String),
    GetXattrs,
    /// A read-only cls method; its output is returned.
    Exec {
        class: String,
        method: String,
        input: Bytes,
    },
    AssertExists,
    AssertVersion(u64),
    OmapCmp {
        key: String,
        op: CmpOp,
        value: Bytes,
    },
    CmpXattr {
        name: String,
        op: CmpOp,
        value: Bytes,
    },
}

/// A read operation on one object, optionally at a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOp {
    pub steps: Vec<ReadStep>,
    /// `NOSNAP` reads the head.
    pub snap: SnapId,
}

impl Default for ReadOp {
    fn default() -> Self {
        ReadOp {
            steps: Vec::new(),
            snap: NOSNAP,
        }
    }
}

impl ReadOp {
    pub fn new() -> Self {
        Self::default()
    }
    /// As [`WriteOp::kind`]: `exec` or `read`.
    pub fn kind(&self) -> RadosOp {
        let exec = self
            .steps
            .iter()
            .any(|s| matches!(s, ReadStep::Exec { .. }));
        if exec { RadosOp::Exec } else { RadosOp::Read }
    }
    pub fn at_snap(mut self, snap: SnapId) -> Self {
        self.snap = snap;
        self
    }
    fn step(mut self, step: ReadStep) -> Self {
        self.steps.push(step);
        self
    }
    pub fn read(self, offset: u64, len: u64) -> Self {
        self.step(ReadStep::Read { offset, len })
    }
    pub fn stat(self) -> Self {
        self.step(ReadStep::Stat)
    }
    pub fn omap_get_vals(
        self,
        start_after: impl Into<String>,
        prefix: impl Into<String>,
        max: u64,
    ) -> Self {
        self.step(ReadStep::OmapGetVals {
            start_after: start_after.into(),
            prefix: prefix.into(),
            max,
        })
    }
    pub fn omap_get_keys(self, start_after: impl Into<String>, max: u64) -> Self {
        self.step(ReadStep::OmapGetKeys {
            start_after: start_after.into(),
            max,
        })
    }
    pub fn omap_get_vals_by_keys<K: Into<String>>(self, keys: impl IntoIterator<Item = K>) -> Self {
        self.step(ReadStep::OmapGetValsByKeys(
            keys.into_iter().map(Into::into).collect(),
        ))
    }
    pub fn get_xattr(self, name: impl Into<String>) -> Self {
        self.step(ReadStep::GetXattr(name.into()))
    }
    pub fn get_xattrs(self) -> Self {
        self.step(ReadStep::GetXattrs)
    }
    pub fn exec(self, class: &str, method: &str, input: impl Into<Bytes>) -> Self {
        self.step(ReadStep::Exec {
            class: class.into(),
            method: method.into(),
            input: input.into(),
        })
    }
    pub fn assert_exists(self) -> Self {
        self.step(ReadStep::AssertExists)
    }
    pub fn assert_version(self, version: u64) -> Self {
        self.step(ReadStep::AssertVersion(version))
    }
    pub fn omap_cmp(self, key: impl Into<String>, op: CmpOp, value: impl Into<Bytes>) -> Self {
        self.step(ReadStep::OmapCmp {
            key: key.into(),
            op,
            value: value.into(),
        })
    }
    pub fn cmp_xattr(self, name: impl Into<String>, op: CmpOp, value: impl Into<Bytes>) -> Self {
        self.step(ReadStep::CmpXattr {
            name: name.into(),
            op,
            value: value.into(),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectStat {
    pub size: u64,
    pub mtime: SystemTime,
}

/// The result of one [`ReadStep`], at the same index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadResult {
    Data(Bytes),
    Stat(ObjectStat),
    /// Omap pairs; `more` is true when `max` cut the listing short.
    Omap {
        entries: BTreeMap<String, Bytes>,
        more: bool,
    },
    Keys {
        keys: Vec<String>,
        more: bool,
    },
    Xattrs(BTreeMap<String, Bytes>),
    /// Asserts and comparisons that passed.
    Done,
}

/// What a read operation returns: one result per step and the object's version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadReply {
    pub results: Vec<ReadResult>,
    pub version: u64,
}
