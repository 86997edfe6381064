//! Object-class methods of the embedded backend: Rust implementations of the cls methods
//! rbd-relay calls (cls_rbd, cls_journal, cls_lock), run inside an atomic operation against
//! one object, as an OSD runs them. A method sees the object through [`ClsContext`] and
//! fails with Ceph's errno; a failure cancels the whole operation.
//!
//! Like the OSD: an unknown class answers `EPERM`, an unknown method of a known class
//! `EOPNOTSUPP`, and a method's rights come from its own flags (a write method called from
//! a read op still writes, as measured on 16.2.15).

mod journal;
mod lock;
mod rbd_clone;
mod rbd_dir;
mod rbd_id;
mod rbd_image;
mod rbd_leader;
mod rbd_mirror;

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use bytes::Bytes;

use super::store::ObjData;
use crate::rados::Errno;

/// What a method may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClsFlags {
    Read,
    ReadWrite,
}

/// A method: input bytes in, output bytes or errno out.
pub type ClsMethod = fn(&mut ClsContext<'_>, Bytes) -> Result<Bytes, Errno>;

/// The cls methods one cluster's OSDs know.
#[derive(Default)]
pub struct ClsRegistry {
    classes: HashMap<&'static str, HashMap<&'static str, (ClsFlags, ClsMethod)>>,
}

impl ClsRegistry {
    /// The classes a Ceph OSD ships that rbd-relay talks to, with the methods implemented
    /// so far; any other method answers `EOPNOTSUPP`, as an OSD does for one it lacks.
    pub fn with_ceph_classes() -> Self {
        let mut r = ClsRegistry::default();
        for class in ["rbd", "journal", "lock"] {
            r.class(class);
        }
        rbd_id::register(&mut r);
        rbd_image::register(&mut r);
        rbd_clone::register(&mut r);
        rbd_mirror::register(&mut r);
        rbd_leader::register(&mut r);
        rbd_dir::register(&mut r);
        journal::register(&mut r);
        lock::register(&mut r);
        r
    }

    /// Declares a class with no methods yet (so its unknown methods answer `EOPNOTSUPP`).
    pub fn class(&mut self, class: &'static str) {
        self.classes.entry(class).or_default();
    }

    /// Adds (or replaces) `class.method`. A method runs under the store lock, inside the
    /// op: it reads and changes the object through its [`ClsContext`] (mutating calls mark
    /// the op as a modification, which moves the version), and an `Err` undoes everything
    /// the op did. `ReadWrite` methods also run on missing objects and from read ops;
    /// `Read` ones never see a missing object (the op fails with `ENOENT` first).
    ///
    /// ```
    /// # use bytes::Bytes;
    /// # use rbd_relay::rados::Errno;
    /// # use rbd_relay::rados::memory::cls::{ClsContext, ClsFlags, ClsRegistry};
    /// fn get(ctx: &mut ClsContext<'_>, _input: Bytes) -> Result<Bytes, Errno> {
    ///     ctx.omap_get("key")?.ok_or(Errno::ENOENT)
    /// }
    /// let mut cls = ClsRegistry::with_ceph_classes();
    /// cls.register("journal", "get_key", ClsFlags::Read, get);
    /// ```
    pub fn register(
        &mut self,
        class: &'static str,
        method: &'static str,
        flags: ClsFlags,
        f: ClsMethod,
    ) {
        self.classes
            .entry(class)
            .or_default()
            .insert(method, (flags, f));
    }

    pub(super) fn lookup(&self, class: &str, method: &str) -> Result<(ClsFlags, ClsMethod), Errno> {
        let methods = self.classes.get(class).ok_or(Errno::EPERM)?;
        methods.get(method).copied().ok_or(Errno::EOPNOTSUPP)
    }
}

/// The calling client, as a method sees it (cls_rbd records it as a status's origin).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub gid: u64,
    /// The client's connection nonce (its "address" in the embedded backend).
    pub nonce: u32,
}

/// One object as a cls method sees it, inside the running operation.
pub struct ClsContext<'a> {
    pub(super) obj: &'a mut Option<ObjData>,
    pub(super) caller: Caller,
    /// (gid, nonce) of the clients currently watching this object.
    pub(super) watchers: Vec<Caller>,
    /// Set by every mutating call: the op then moves the object's version and mtime.
    pub(super) modified: bool,
}

impl ClsContext<'_> {
    pub fn exists(&self) -> bool {
        self.obj.is_some()
    }

    pub fn caller(&self) -> Caller {
        self.caller
    }

    /// The clients watching this object now.
    pub fn watchers(&self) -> &[Caller] {
        &self.watchers
    }

    /// The OSD's clock.
    pub fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn existing(&self) -> Result<&ObjData, Errno> {
        self.obj.as_ref().ok_or(Errno::ENOENT)
    }

    fn existing_mut(&mut self) -> Result<&mut ObjData, Errno> {
        self.modified = true;
        self.obj.as_mut().ok_or(Errno::ENOENT)
    }

    /// The head for a mutating call that creates the object.
    fn created(&mut self) -> &mut ObjData {
        self.modified = true;
        self.obj.get_or_insert_with(ObjData::new)
    }

    /// Creates the object; `EEXIST` if `exclusive` and it exists.
    pub fn create(&mut self, exclusive: bool) -> Result<(), Errno> {
        if exclusive && self.obj.is_some() {
            return Err(Errno::EEXIST);
        }
        self.created();
        Ok(())
    }

    pub fn remove(&mut self) -> Result<(), Errno> {
        self.existing_mut()?;
        *self.obj = None;
        Ok(())
    }

    pub fn size(&self) -> Result<u64, Errno> {
        Ok(self.existing()?.data.len() as u64)
    }

    /// The object's data (`ENOENT` if it does not exist).
    pub fn read(&self) -> Result<Bytes, Errno> {
        Ok(Bytes::copy_from_slice(&self.existing()?.data))
    }

    /// Replaces the data, creating the object.
    pub fn write_full(&mut self, data: &[u8]) {
        self.created().set_data(data.to_vec());
    }

    /// Appends to the data, creating the object.
    pub fn append(&mut self, data: &[u8]) {
        self.created().append(data);
    }

    /// One omap value; `Ok(None)` when the key is absent, `ENOENT` when the object is.
    pub fn omap_get(&self, key: &str) -> Result<Option<Bytes>, Errno> {
        Ok(self.existing()?.omap.get(key).cloned())
    }

    /// Up to `max` pairs after `start_after` whose keys start with `prefix`.
    pub fn omap_range(
        &self,
        start_after: &str,
        prefix: &str,
        max: usize,
    ) -> Result<BTreeMap<String, Bytes>, Errno> {
        Ok(self.existing()?.omap_page(start_after, prefix, max).0)
    }

    /// Sets omap pairs, creating the object.
    pub fn omap_set(&mut self, kv: impl IntoIterator<Item = (String, Bytes)>) {
        self.created().omap.extend(kv);
    }

    pub fn omap_remove(&mut self, key: &str) -> Result<(), Errno> {
        self.existing_mut()?.omap.remove(key);
        Ok(())
    }

    pub fn xattr_get(&self, name: &str) -> Result<Bytes, Errno> {
        self.existing()?
            .xattrs
            .get(name)
            .cloned()
            .ok_or(Errno::ENODATA)
    }

    pub fn xattr_names(&self) -> Result<Vec<String>, Errno> {
        Ok(self.existing()?.xattrs.keys().cloned().collect())
    }

    pub fn xattr_set(&mut self, name: &str, value: Bytes) {
        self.created().xattrs.insert(name.to_string(), value);
    }
}
