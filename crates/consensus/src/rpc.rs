//! Request and response between validators over a dedicated, authenticated p2p channel.
//!
//! The consensus channels carry votes, certificates, blocks and gossip; applications that need
//! to ask one validator something and wait for its answer (the erasure-coded record store:
//! "store this shard", "send me your shard of that stripe") use this instead. Each message is
//! `tag (0 request, 1 response) ‖ id (u64, big-endian) ‖ payload`. The sender of every
//! message is authenticated by the p2p layer and named here by its position in the genesis
//! validator list. Requests are answered by an [`RpcHandler`], at most [`MAX_INFLIGHT`] at a
//! time (more are answered "busy" at once), so a peer cannot make a validator hold more than
//! a bounded number of requests in memory. Delivery is best effort: a call that gets no
//! answer in time fails, and the caller decides whether to try again or elsewhere.

use commonware_p2p::{Receiver, Recipients, Sender};
use futures::{FutureExt as _, channel::oneshot, future::BoxFuture};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

/// Requests a validator answers at once; more get [`BUSY`].
pub const MAX_INFLIGHT: usize = 8;
/// The payload of the answer to a request that found the validator busy or failed.
pub const BUSY: &[u8] = b"\xffbusy";

const REQUEST: u8 = 0;
const RESPONSE: u8 = 1;

/// Answers requests from other validators.
pub trait RpcHandler: Send + Sync + 'static {
    /// The answer to `request` from validator `from` (its position in the genesis list), or
    /// `None` to send [`BUSY`].
    fn handle(&self, from: usize, request: bytes::Bytes) -> BoxFuture<'static, Option<Vec<u8>>>;
}

/// Why a call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RpcError {
    #[error("validator {0} is not a peer")]
    NoSuchPeer(usize),
    #[error("validator {0} did not answer in time")]
    Timeout(usize),
    #[error("validator {0} is busy or could not answer")]
    Busy(usize),
    #[error("the p2p network is not running")]
    Closed,
}

type SendFn = Box<dyn FnMut(usize, Vec<u8>) -> bool + Send>;
type SleepFn = Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>;

/// A handle to make calls; cheap to clone.
#[derive(Clone)]
pub struct Rpc {
    inner: Arc<Inner>,
}

struct Inner {
    me: usize,
    validators: usize,
    send: Mutex<SendFn>,
    sleep: SleepFn,
    /// Calls waiting for an answer: the validator asked, and where its answer goes.
    pending: Mutex<HashMap<u64, (usize, oneshot::Sender<bytes::Bytes>)>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rpc(me {} of {})", self.inner.me, self.inner.validators)
    }
}

fn frame(tag: u8, id: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    out.push(tag);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

impl Rpc {
    /// This validator's position in the genesis list.
    pub fn me(&self) -> usize {
        self.inner.me
    }

    /// How many validators there are.
    pub fn validators(&self) -> usize {
        self.inner.validators
    }

    /// Sends `request` to validator `to` and waits at most `timeout` for its answer.
    pub async fn call(
        &self,
        to: usize,
        request: &[u8],
        timeout: Duration,
    ) -> Result<bytes::Bytes, RpcError> {
        if to >= self.inner.validators || to == self.inner.me {
            return Err(RpcError::NoSuchPeer(to));
        }
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner
            .pending
            .lock()
            .expect("pending calls lock")
            .insert(id, (to, tx));
        let sent =
            (self.inner.send.lock().expect("rpc sender lock"))(to, frame(REQUEST, id, request));
        let answer = if sent {
            let sleep = (self.inner.sleep)(timeout);
            futures::select! {
                a = rx.fuse() => a.ok(),
                () = sleep.fuse() => None,
            }
        } else {
            None
        };
        self.inner
            .pending
            .lock()
            .expect("pending calls lock")
            .remove(&id);
        match answer {
            Some(a) if a.as_ref() == BUSY => Err(RpcError::Busy(to)),
            Some(a) => Ok(a),
            None => Err(RpcError::Timeout(to)),
        }
    }
}

/// Starts serving the channel `(sender, receiver)`: answers requests with `handler` and
/// routes answers to [`Rpc::call`]s. `peers` is the genesis list of validator keys (positions
/// are indexes), `me` this validator's position; `spawn` runs a future on the runtime and
/// `sleep` waits. Returns the handle and the receive loop to run.
pub fn serve<S, R>(
    mut sender: S,
    mut receiver: R,
    peers: Vec<S::PublicKey>,
    me: usize,
    handler: Arc<dyn RpcHandler>,
    spawn: Arc<dyn Fn(BoxFuture<'static, ()>) + Send + Sync>,
    sleep: SleepFn,
) -> (Rpc, BoxFuture<'static, ()>)
where
    S: Sender + Send + 'static,
    R: Receiver<PublicKey = S::PublicKey>,
{
    let index: HashMap<S::PublicKey, usize> = peers
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, p)| (p, i))
        .collect();
    let keys = peers.clone();
    let send: SendFn = Box::new(move |to: usize, msg: Vec<u8>| {
        let Some(pk) = keys.get(to) else {
            return false;
        };
        !sender
            .send(Recipients::One(pk.clone()), msg, false)
            .is_empty()
    });
    let inner = Arc::new(Inner {
        me,
        validators: peers.len(),
        send: Mutex::new(send),
        sleep,
        pending: Mutex::new(HashMap::new()),
        next: AtomicU64::new(1),
    });
    let rpc = Rpc {
        inner: inner.clone(),
    };
    let inflight = Arc::new(AtomicUsize::new(0));
    let run = async move {
        while let Ok((from, msg)) = receiver.recv().await {
            let Some(&from) = index.get(&from) else {
                continue;
            };
            let msg = bytes::Bytes::copy_from_slice(msg.as_ref());
            if msg.len() < 9 {
                continue;
            }
            let id = u64::from_be_bytes(msg[1..9].try_into().expect("8 bytes"));
            let payload = msg.slice(9..);
            match msg[0] {
                RESPONSE => {
                    // Only the validator that was asked answers: ids are guessable, and
                    // another peer's "stored" must never count as this one's.
                    let mut pending = inner.pending.lock().expect("pending calls lock");
                    if pending.get(&id).is_some_and(|(to, _)| *to == from)
                        && let Some((_, tx)) = pending.remove(&id)
                    {
                        let _ = tx.send(payload);
                    }
                }
                REQUEST => {
                    if inflight.fetch_add(1, Ordering::SeqCst) >= MAX_INFLIGHT {
                        inflight.fetch_sub(1, Ordering::SeqCst);
                        (inner.send.lock().expect("rpc sender lock"))(
                            from,
                            frame(RESPONSE, id, BUSY),
                        );
                        continue;
                    }
                    let (inner, inflight, handler) =
                        (inner.clone(), inflight.clone(), handler.clone());
                    spawn(Box::pin(async move {
                        let answer = handler.handle(from, payload).await;
                        let body = answer.unwrap_or_else(|| BUSY.to_vec());
                        (inner.send.lock().expect("rpc sender lock"))(
                            from,
                            frame(RESPONSE, id, &body),
                        );
                        inflight.fetch_sub(1, Ordering::SeqCst);
                    }));
                }
                _ => {}
            }
        }
    }
    .boxed();
    (rpc, run)
}
