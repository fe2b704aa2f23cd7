//! A FUSE filesystem that loses what was not fsync'd when the power is cut (LazyFS's idea):
//! a passthrough to a backing directory whose file writes are kept in memory, as a page cache
//! keeps them, and reach the backing files only on `fsync`. [`LazyFs::cut_power`] drops every
//! write not yet synced, as a power cut drops the page cache; what a process saw written and
//! never synced is gone, what it synced is there. [`LazyFs::cut_power_during_fsync`] cuts it
//! while the next fsync is under way: that fsync never answers, and every operation after it
//! fails until [`LazyFs::power_on`], as on a machine that went dark. Metadata (create, rename,
//! unlink, truncate) goes through at once, as a journaling filesystem's does. `fsync` can be
//! made slow.
//!
//! Mounted with `fusermount3` (Debian's `fuse3`; `.ci/run` installs it) through the `fuser`
//! crate, in a thread of the test process; unmounted on drop.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

const PAGE: u64 = 4096;
const TTL: Duration = Duration::ZERO;
const ROOT: u64 = 1;

/// What the page cache holds of one file: its pages written since the last fsync, and its
/// size as the writers see it.
#[derive(Default)]
struct Dirty {
    pages: BTreeMap<u64, Vec<u8>>,
    size: Option<u64>,
}

#[derive(Default)]
struct State {
    paths: HashMap<u64, PathBuf>,
    inodes: HashMap<PathBuf, u64>,
    next: u64,
    dirty: HashMap<u64, Dirty>,
    fsync_delay: Duration,
    /// The next fsync cuts the power instead of syncing.
    cut_armed: bool,
    /// The power is off: every operation fails (EIO), fsyncs never answer.
    dark: bool,
    /// Writes dropped by power cuts, and fsyncs served.
    lost_bytes: u64,
    fsyncs: u64,
}

/// The mounted filesystem; unmounted on drop.
pub struct LazyFs {
    pub mountpoint: PathBuf,
    state: Arc<Mutex<State>>,
    _session: fuser::BackgroundSession,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl LazyFs {
    pub fn mount() -> Self {
        let backing = tempfile::tempdir().unwrap();
        let mountpoint = tempfile::tempdir().unwrap();
        let mut st = State {
            next: ROOT + 1,
            ..State::default()
        };
        st.paths.insert(ROOT, backing.path().to_owned());
        st.inodes.insert(backing.path().to_owned(), ROOT);
        let state = Arc::new(Mutex::new(st));
        let fs = Fs {
            state: state.clone(),
        };
        let session = fuser::spawn_mount2(
            fs,
            mountpoint.path(),
            &[
                MountOption::FSName("lazyfs".into()),
                MountOption::AutoUnmount,
                MountOption::AllowRoot,
            ],
        )
        .expect("mounting the FUSE filesystem (needs /dev/fuse and fusermount3)");
        Self {
            mountpoint: mountpoint.path().to_owned(),
            state,
            _session: session,
            _dirs: (backing, mountpoint),
        }
    }

    /// Every write not yet fsync'd is lost; returns how many bytes.
    pub fn cut_power(&self) -> u64 {
        let mut st = self.state.lock().unwrap();
        let lost: u64 = st
            .dirty
            .values()
            .map(|d| d.pages.values().map(|p| p.len() as u64).sum::<u64>())
            .sum();
        st.dirty.clear();
        st.lost_bytes += lost;
        lost
    }

    /// The power goes while the next fsync is under way: what it was to sync is lost with
    /// everything else unsynced, and the caller never gets its answer.
    pub fn cut_power_during_fsync(&self) {
        self.state.lock().unwrap().cut_armed = true;
    }

    /// Whether the armed cut has happened.
    pub fn is_dark(&self) -> bool {
        self.state.lock().unwrap().dark
    }

    /// Power back: the filesystem serves again, with what was synced.
    pub fn power_on(&self) {
        let mut st = self.state.lock().unwrap();
        st.dark = false;
        st.cut_armed = false;
    }

    /// Each fsync takes `delay` (a slow disk).
    pub fn slow_fsync(&self, delay: Duration) {
        self.state.lock().unwrap().fsync_delay = delay;
    }

    pub fn fsyncs(&self) -> u64 {
        self.state.lock().unwrap().fsyncs
    }

    /// Unsynced bytes dropped by power cuts so far.
    pub fn lost_bytes(&self) -> u64 {
        self.state.lock().unwrap().lost_bytes
    }
}

struct Fs {
    state: Arc<Mutex<State>>,
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc_eio())
}

const fn libc_eio() -> i32 {
    5
}
const ENOENT: i32 = 2;

fn time(secs: i64, nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32)
}

impl State {
    fn path(&self, ino: u64) -> Option<PathBuf> {
        self.paths.get(&ino).cloned()
    }

    fn ino_of(&mut self, path: &Path) -> u64 {
        if let Some(ino) = self.inodes.get(path) {
            return *ino;
        }
        let ino = self.next;
        self.next += 1;
        self.inodes.insert(path.to_owned(), ino);
        self.paths.insert(ino, path.to_owned());
        ino
    }

    fn forget_path(&mut self, path: &Path) {
        if let Some(ino) = self.inodes.remove(path) {
            self.paths.remove(&ino);
            self.dirty.remove(&ino);
        }
    }

    fn attr(&self, ino: u64, path: &Path) -> std::io::Result<FileAttr> {
        let m = std::fs::symlink_metadata(path)?;
        let kind = if m.is_dir() {
            FileType::Directory
        } else {
            FileType::RegularFile
        };
        let size = self.dirty.get(&ino).and_then(|d| d.size).unwrap_or(m.len());
        Ok(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: time(m.atime(), m.atime_nsec()),
            mtime: time(m.mtime(), m.mtime_nsec()),
            ctime: time(m.ctime(), m.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind,
            perm: (m.permissions().mode() & 0o7777) as u16,
            nlink: m.nlink() as u32,
            uid: m.uid(),
            gid: m.gid(),
            rdev: 0,
            blksize: PAGE as u32,
            flags: 0,
        })
    }

    /// The file's bytes in `[offset, offset + len)` as its writers see them: the backing
    /// file's, with the dirty pages over them, cut at the size.
    fn read(&self, ino: u64, path: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let file = File::open(path)?;
        let size = self
            .dirty
            .get(&ino)
            .and_then(|d| d.size)
            .unwrap_or(file.metadata()?.len());
        if offset >= size {
            return Ok(Vec::new());
        }
        let end = (offset + len).min(size);
        let mut out = vec![0u8; (end - offset) as usize];
        let mut filled = 0;
        while filled < out.len() {
            let n = file.read_at(&mut out[filled..], offset + filled as u64)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if let Some(d) = self.dirty.get(&ino) {
            let (first, last) = (offset / PAGE, (end - 1) / PAGE);
            for (&page, data) in d.pages.range(first..=last) {
                let start = page * PAGE;
                let from = offset.max(start);
                let to = end.min(start + PAGE);
                out[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
            }
        }
        Ok(out)
    }

    fn write(&mut self, ino: u64, path: &Path, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let backing = File::open(path)?;
        let backing_len = backing.metadata()?.len();
        let dirty = self.dirty.entry(ino).or_default();
        let size = dirty.size.unwrap_or(backing_len);
        let end = offset + data.len() as u64;
        let mut at = offset;
        while at < end {
            let page = at / PAGE;
            let start = page * PAGE;
            let buf = dirty.pages.entry(page).or_insert_with(|| {
                // Loaded from the backing file, as the page cache reads a page in.
                let mut buf = vec![0u8; PAGE as usize];
                if start < size.min(backing_len) {
                    let _ = backing.read_at(&mut buf, start);
                }
                buf
            });
            let to = end.min(start + PAGE);
            buf[(at - start) as usize..(to - start) as usize]
                .copy_from_slice(&data[(at - offset) as usize..(to - offset) as usize]);
            at = to;
        }
        dirty.size = Some(size.max(end));
        Ok(())
    }

    /// Writes the file's dirty pages to the backing file and syncs it.
    fn sync(&mut self, ino: u64, path: &Path) -> std::io::Result<()> {
        self.fsyncs += 1;
        let Some(dirty) = self.dirty.remove(&ino) else {
            return File::open(path)?.sync_all();
        };
        let file = OpenOptions::new().write(true).open(path)?;
        let size = dirty.size.unwrap_or(file.metadata()?.len());
        for (page, data) in &dirty.pages {
            let start = page * PAGE;
            if start >= size {
                continue;
            }
            let len = (size - start).min(PAGE) as usize;
            file.write_all_at(&data[..len], start)?;
        }
        file.set_len(size)?;
        file.sync_all()
    }
}

impl Filesystem for Fs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let mut st = self.state.lock().unwrap();
        let Some(dir) = st.path(parent) else {
            return reply.error(ENOENT);
        };
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            return reply.error(ENOENT);
        }
        let ino = st.ino_of(&path);
        match st.attr(ino, &path) {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        let st = self.state.lock().unwrap();
        match st.path(ino).map(|p| st.attr(ino, &p)) {
            Some(Ok(attr)) => reply.attr(&TTL, &attr),
            Some(Err(e)) => reply.error(errno(&e)),
            None => reply.error(ENOENT),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut st = self.state.lock().unwrap();
        let Some(path) = st.path(ino) else {
            return reply.error(ENOENT);
        };
        let result = (|| {
            if let Some(mode) = mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            }
            if let Some(size) = size {
                // A truncation is metadata: at once, with the pages past it dropped.
                OpenOptions::new().write(true).open(&path)?.set_len(size)?;
                if let Some(d) = st.dirty.get_mut(&ino) {
                    d.pages.retain(|page, _| page * PAGE < size);
                    if let Some(last) = d.pages.get_mut(&(size / PAGE)) {
                        last[(size % PAGE) as usize..].fill(0);
                    }
                    d.size = Some(size);
                }
            }
            st.attr(ino, &path)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut st = self.state.lock().unwrap();
        let Some(dir) = st.path(parent) else {
            return reply.error(ENOENT);
        };
        let path = dir.join(name);
        if let Err(e) = std::fs::create_dir(&path) {
            return reply.error(errno(&e));
        }
        let ino = st.ino_of(&path);
        match st.attr(ino, &path) {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.state.lock().unwrap();
        let Some(dir) = st.path(parent) else {
            return reply.error(ENOENT);
        };
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                st.forget_path(&path);
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        _flags: u32,
        reply: ReplyEmpty,
    ) {
        let mut st = self.state.lock().unwrap();
        let (Some(from_dir), Some(to_dir)) = (st.path(parent), st.path(newparent)) else {
            return reply.error(ENOENT);
        };
        let (from, to) = (from_dir.join(name), to_dir.join(newname));
        if let Err(e) = std::fs::rename(&from, &to) {
            return reply.error(errno(&e));
        }
        st.forget_path(&to);
        if let Some(ino) = st.inodes.remove(&from) {
            st.inodes.insert(to.clone(), ino);
            st.paths.insert(ino, to);
        }
        reply.ok()
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let st = self.state.lock().unwrap();
        match st.path(ino) {
            Some(_) => reply.opened(0, 0),
            None => reply.error(ENOENT),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut st = self.state.lock().unwrap();
        let Some(dir) = st.path(parent) else {
            return reply.error(ENOENT);
        };
        let path = dir.join(name);
        let created = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .and_then(|f| f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777)));
        if let Err(e) = created {
            return reply.error(errno(&e));
        }
        let ino = st.ino_of(&path);
        match st.attr(ino, &path) {
            Ok(attr) => reply.created(&TTL, &attr, 0, 0, 0),
            Err(e) => reply.error(errno(&e)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let st = self.state.lock().unwrap();
        let Some(path) = st.path(ino) else {
            return reply.error(ENOENT);
        };
        match st.read(ino, &path, offset.max(0) as u64, u64::from(size)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(&e)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let mut st = self.state.lock().unwrap();
        if st.dark {
            return reply.error(libc_eio());
        }
        let Some(path) = st.path(ino) else {
            return reply.error(ENOENT);
        };
        match st.write(ino, &path, offset.max(0) as u64, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _owner: u64, reply: ReplyEmpty) {
        // close() is no fsync: the pages stay dirty.
        reply.ok()
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let delay = self.state.lock().unwrap().fsync_delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut st = self.state.lock().unwrap();
        if st.cut_armed || st.dark {
            // The power goes now: nothing of this fsync reaches the disk. On a real machine
            // its caller would never learn anything; here it gets EIO (so it acknowledges
            // nothing more) and the test kills it right after, as the power cut would.
            st.cut_armed = false;
            st.dark = true;
            let lost: u64 = st
                .dirty
                .values()
                .map(|d| d.pages.values().map(|p| p.len() as u64).sum::<u64>())
                .sum();
            st.dirty.clear();
            st.lost_bytes += lost;
            drop(st);
            return reply.error(libc_eio());
        }
        let Some(path) = st.path(ino) else {
            return reply.error(ENOENT);
        };
        match st.sync(ino, &path) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        reply.ok()
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let mut st = self.state.lock().unwrap();
        let Some(dir) = st.path(ino) else {
            return reply.error(ENOENT);
        };
        let mut entries = vec![
            (ino, FileType::Directory, ".".into()),
            (ino, FileType::Directory, "..".into()),
        ];
        match std::fs::read_dir(&dir) {
            Ok(read) => {
                for e in read.flatten() {
                    let kind = if e.file_type().is_ok_and(|t| t.is_dir()) {
                        FileType::Directory
                    } else {
                        FileType::RegularFile
                    };
                    let child = st.ino_of(&e.path());
                    entries.push((child, kind, e.file_name()));
                }
            }
            Err(e) => return reply.error(errno(&e)),
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(ino, (i + 1) as i64, kind, &name) {
                break;
            }
        }
        reply.ok()
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let root = self.state.lock().unwrap().path(ROOT).unwrap();
        match rustix::fs::statvfs(&root) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(e.raw_os_error()),
        }
    }
}
