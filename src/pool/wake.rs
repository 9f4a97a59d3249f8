//! A result channel whose receiver is either a blocked thread or an async task.
//!
//! It is `std::sync::mpsc` plus an [`AtomicWaker`]: every send wakes the task that
//! last polled the receiver, if one did (one atomic operation when none did, so the
//! blocking paths pay next to nothing), and so does the last sender going away (the
//! stream has ended). The task is woken on the sending thread: the worker's reader,
//! a caller whose post handled the event, or the pool thread (see `hub.rs`); nothing
//! here runs or needs a runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::time::Duration;

use atomic_waker::AtomicWaker;

/// What both ends share: the task to wake and how many senders are left.
struct Shared {
    waker: AtomicWaker,
    senders: AtomicUsize,
}

/// A new channel.
pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        waker: AtomicWaker::new(),
        senders: AtomicUsize::new(1),
    });
    (
        Sender {
            tx: Some(tx),
            shared: shared.clone(),
        },
        Receiver { rx, shared },
    )
}

/// The sending end; clones count as senders.
pub(crate) struct Sender<T> {
    /// Taken only by `drop`.
    tx: Option<mpsc::Sender<T>>,
    shared: Arc<Shared>,
}

impl<T> Sender<T> {
    /// Sends `value` and wakes the receiving task, if any. A receiver that is gone is
    /// not an error: nobody wants the value.
    pub(crate) fn send(&self, value: T) {
        if self.tx.as_ref().is_some_and(|tx| tx.send(value).is_ok()) {
            self.shared.waker.wake();
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The channel disconnects when `tx` goes, right after this: a task woken
            // now may still find it open and register again, so wake it after.
            drop(self.tx.take());
            self.shared.waker.wake();
        }
    }
}

/// The receiving end.
pub(crate) struct Receiver<T> {
    rx: mpsc::Receiver<T>,
    shared: Arc<Shared>,
}

impl<T> Receiver<T> {
    /// Blocks for the next value; `None` once every sender is gone.
    pub(crate) fn recv(&self) -> Option<T> {
        self.rx.recv().ok()
    }

    /// Blocks for at most `timeout`.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<T, mpsc::RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// The next value if one is in.
    pub(crate) fn try_recv(&self) -> Result<T, mpsc::TryRecvError> {
        self.rx.try_recv()
    }

    /// The next value, `Ready(None)` once every sender is gone, or `Pending` with the
    /// task registered to be woken by the next send.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.rx.try_recv() {
            Ok(value) => return Poll::Ready(Some(value)),
            Err(mpsc::TryRecvError::Disconnected) => return Poll::Ready(None),
            Err(mpsc::TryRecvError::Empty) => {}
        }
        self.shared.waker.register(cx.waker());
        // A send between the look above and the registration woke nobody: look again.
        match self.rx.try_recv() {
            Ok(value) => Poll::Ready(Some(value)),
            Err(mpsc::TryRecvError::Disconnected) => Poll::Ready(None),
            Err(mpsc::TryRecvError::Empty) => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::task::{Wake, Waker};

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn flag() -> (Arc<Flag>, Waker) {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        (flag.clone(), Waker::from(flag))
    }

    #[test]
    fn a_send_wakes_the_task_that_polled() {
        let (tx, rx) = channel::<u32>();
        let (woken, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        assert!(rx.poll_recv(&mut cx).is_pending());
        assert!(!woken.0.load(Ordering::SeqCst));
        std::thread::spawn(move || tx.send(7)).join().unwrap();
        assert!(woken.0.load(Ordering::SeqCst));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(7)));
    }

    #[test]
    fn the_last_sender_gone_wakes_the_task_and_ends_the_channel() {
        let (tx, rx) = channel::<u32>();
        let tx2 = tx.clone();
        let (woken, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        assert!(rx.poll_recv(&mut cx).is_pending());
        drop(tx);
        assert!(!woken.0.load(Ordering::SeqCst), "a sender is left");
        drop(tx2);
        assert!(woken.0.load(Ordering::SeqCst));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));
    }
}
