//! Shared memory: a byte buffer and a typed slice of plain numbers, mapped in several
//! processes without copying.

use std::marker::PhantomData;

use super::region::{self, Holder, Kind, Region, SharedState};
use crate::error::{Error, ErrorKind};

/// Shared memory has no state besides the header.
#[repr(C)]
struct NoState {
    _unused: std::sync::atomic::AtomicU64,
}

// SAFETY: repr(C), an atomic, valid when zeroed.
unsafe impl SharedState for NoState {}

fn repair(_: &Region) {}

fn create(len: usize, tag: u64) -> Result<Holder, Error> {
    let region = Region::create(
        Kind::SharedMemory,
        tag,
        size_of::<NoState>(),
        len,
        |_| Ok(()),
        repair,
    )?;
    Holder::attach(region, 0)
}

/// A zero-initialised byte buffer in shared memory (a memfd): every process holding a
/// handle maps the same bytes, nothing is copied. Nothing is left behind in the file
/// system; the memory is freed when the last process holding it drops it or dies.
///
/// Concurrent access from several processes is not synchronised: guard it with a
/// [`crate::Lock`], or give each process its own range.
///
/// At most 128 processes hold one object at once (one holding both ends of a pipe
/// counts twice): decoding a handle in one more fails with
/// [`ErrorKind::TooManyHolders`](crate::ErrorKind::TooManyHolders), until a holder
/// drops its handles or dies.
#[derive(Clone)]
pub struct SharedMemory {
    att: Holder,
}

region::serde_handle!(
    SharedMemory,
    Kind::SharedMemory,
    0,
    NoState,
    repair,
    |att| SharedMemory { att }
);

impl std::fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMemory")
            .field("len", &self.len())
            .finish()
    }
}

impl SharedMemory {
    /// A new buffer of `len` zero bytes.
    pub fn new(len: usize) -> Result<SharedMemory, Error> {
        Ok(SharedMemory {
            att: create(len, 0)?,
        })
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.att.region.data().1
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Start of the bytes in this process (64-byte aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.att.region.data().0
    }

    /// Copies `buf.len()` bytes from `offset` into `buf`. Panics if the range is out of
    /// bounds, like slice indexing.
    pub fn read(&self, offset: usize, buf: &mut [u8]) {
        assert!(
            offset
                .checked_add(buf.len())
                .is_some_and(|end| end <= self.len()),
            "range out of bounds"
        );
        // SAFETY: the range is inside the mapping (checked above); the bytes are plain.
        unsafe { std::ptr::copy(self.as_ptr().add(offset), buf.as_mut_ptr(), buf.len()) };
    }

    /// Copies `buf` to `offset`. Panics if the range is out of bounds.
    pub fn write(&self, offset: usize, buf: &[u8]) {
        assert!(
            offset
                .checked_add(buf.len())
                .is_some_and(|end| end <= self.len()),
            "range out of bounds"
        );
        // SAFETY: as in `read`.
        unsafe { std::ptr::copy(buf.as_ptr(), self.as_ptr().add(offset), buf.len()) };
    }

    /// The bytes as a slice.
    ///
    /// # Safety
    /// While the slice lives, no thread of any process may write the bytes.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping lives as long as `self`; no writer, per the contract.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }

    /// The bytes as a mutable slice.
    ///
    /// # Safety
    /// While the slice lives, no other thread of any process may read or write the
    /// bytes (hold a [`crate::Lock`], or use disjoint ranges by agreement).
    #[expect(
        clippy::mut_from_ref,
        reason = "shared memory is shared; the contract is the caller's"
    )]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: the mapping lives as long as `self`; exclusive, per the contract.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len()) }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Plain numbers that can live in a [`SharedSlice`]: any bit pattern is a value.
pub trait Plain: Copy + Default + sealed::Sealed + 'static {}

macro_rules! plain {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Plain for $t {}
    )*};
}
plain!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

/// A slice of plain numbers in shared memory, zero-initialised: `SharedSlice::<f64>::new(n)`.
/// Each `get` / `set` of one element is a single aligned load or store (never torn for
/// these types); several elements are consistent only under a [`crate::Lock`].
///
/// At most 128 processes hold one object at once (one holding both ends of a pipe
/// counts twice): decoding a handle in one more fails with
/// [`ErrorKind::TooManyHolders`](crate::ErrorKind::TooManyHolders), until a holder
/// drops its handles or dies.
pub struct SharedSlice<T> {
    att: Holder,
    item: PhantomData<T>,
}

fn slice_tag<T>() -> u64 {
    region::type_tag(std::any::type_name::<T>())
}

region::serde_handle!(
    SharedSlice<T>,
    Kind::SharedMemory,
    slice_tag::<T>(),
    NoState,
    repair,
    |att| SharedSlice {
        att,
        item: PhantomData
    }
);

impl<T: Plain> Clone for SharedSlice<T> {
    fn clone(&self) -> Self {
        SharedSlice {
            att: self.att.clone(),
            item: PhantomData,
        }
    }
}

impl<T: Plain> std::fmt::Debug for SharedSlice<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSlice")
            .field("len", &self.len())
            .finish()
    }
}

impl<T: Plain> SharedSlice<T> {
    /// `len` zeros.
    pub fn new(len: usize) -> Result<SharedSlice<T>, Error> {
        // Every length past the limit is refused the same way, whether its size in bytes
        // overflows or not.
        let limit = region::max_data(size_of::<NoState>()) / size_of::<T>();
        if len > limit {
            return Err(ErrorKind::TooManyElements {
                kind: Kind::SharedMemory.name(),
                requested: len as u64,
                size: size_of::<T>(),
                limit: limit as u64,
            }
            .into());
        }
        let bytes = len * size_of::<T>();
        Ok(SharedSlice {
            att: create(bytes, slice_tag::<T>())?,
            item: PhantomData,
        })
    }

    /// A copy of `values` in shared memory.
    pub fn from_slice(values: &[T]) -> Result<SharedSlice<T>, Error> {
        let s = SharedSlice::new(values.len())?;
        for (i, &v) in values.iter().enumerate() {
            s.set(i, v);
        }
        Ok(s)
    }

    fn ptr(&self) -> *mut T {
        self.att.region.data().0.cast()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.att.region.data().1 / size_of::<T>()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i`. Panics if out of bounds.
    pub fn get(&self, i: usize) -> T {
        assert!(i < self.len(), "index {i} out of bounds ({})", self.len());
        // SAFETY: in bounds, aligned (the data is 64-byte aligned); any bits are a T.
        unsafe { self.ptr().add(i).read_volatile() }
    }

    /// Sets element `i`. Panics if out of bounds.
    pub fn set(&self, i: usize, value: T) {
        assert!(i < self.len(), "index {i} out of bounds ({})", self.len());
        // SAFETY: as in `get`.
        unsafe { self.ptr().add(i).write_volatile(value) }
    }

    /// A copy of all elements.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// The elements as a slice.
    ///
    /// # Safety
    /// While the slice lives, no thread of any process may write the elements.
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: the mapping lives as long as `self`; no writer, per the contract.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len()) }
    }

    /// The elements as a mutable slice.
    ///
    /// # Safety
    /// While the slice lives, no other thread of any process may read or write them.
    #[expect(
        clippy::mut_from_ref,
        reason = "shared memory is shared; the contract is the caller's"
    )]
    pub unsafe fn as_mut_slice(&self) -> &mut [T] {
        // SAFETY: the mapping lives as long as `self`; exclusive, per the contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len()) }
    }
}
