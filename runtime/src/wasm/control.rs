//! What a host controls and counts across all its guests (a container's main guest and its
//! `exec`s): `pause`, a gate every guest waits at on its next epoch check, and `stats`, the
//! linear memory they hold and how many run.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits};

/// The guests' shared state.
#[derive(Default)]
pub struct Control {
    paused: Mutex<bool>,
    resumed: Condvar,
    /// Bytes of linear memory the running guests hold.
    memory: AtomicU64,
    /// Guests running.
    guests: AtomicU64,
}

impl Control {
    /// Hold (`true`) or release (`false`) the guests at their epoch checks. The caller
    /// moves the engine's epoch so that running guests reach one.
    pub fn set_paused(&self, paused: bool) {
        *self.paused.lock().unwrap_or_else(|e| e.into_inner()) = paused;
        self.resumed.notify_all();
    }

    /// At an epoch check: wait while paused, unless a stop `signal` comes (a signal handler
    /// sets it and cannot take the lock to wake us, hence the bounded waits).
    pub fn wait_while_paused(&self, signal: &AtomicI32) {
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        while *paused && signal.load(Ordering::SeqCst) == 0 {
            paused = self
                .resumed
                .wait_timeout(paused, Duration::from_millis(20))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn memory(&self) -> u64 {
        self.memory.load(Ordering::SeqCst)
    }

    pub fn guests(&self) -> u64 {
        self.guests.load(Ordering::SeqCst)
    }

    /// Count a guest as running until the returned guard drops.
    pub fn running(self: &Arc<Self>) -> Running {
        self.guests.fetch_add(1, Ordering::SeqCst);
        Running(Arc::clone(self))
    }
}

pub struct Running(Arc<Control>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.guests.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A guest's store limits (`--memory`), counting the memory it is granted into its host's
/// total; the count goes when the store does.
pub struct GuestLimits {
    limits: StoreLimits,
    control: Arc<Control>,
    held: u64,
}

impl GuestLimits {
    pub fn new(limits: StoreLimits, control: &Arc<Control>) -> GuestLimits {
        GuestLimits {
            limits,
            control: Arc::clone(control),
            held: 0,
        }
    }
}

impl ResourceLimiter for GuestLimits {
    // Also called as a memory is made (from 0 to its initial size).
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let granted = self.limits.memory_growing(current, desired, maximum)?;
        if granted {
            let more = desired.saturating_sub(current) as u64;
            self.held += more;
            self.control.memory.fetch_add(more, Ordering::SeqCst);
        }
        Ok(granted)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl Drop for GuestLimits {
    fn drop(&mut self) {
        self.control.memory.fetch_sub(self.held, Ordering::SeqCst);
    }
}
