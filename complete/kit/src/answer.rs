//! The request path as a value. Step 11 made the pipeline a value
//! (`Forward`); from step 12 on, each step's request path is a value that
//! answers a request, and the next step wraps it (step 13's `Sleeping`
//! wraps step 12's `OnDemand`, step 14's `Hardened` wraps that…).
//! [`Answer`] is what they have in common; [`handler`] makes one a
//! [`Handler`], what the servers of steps 09 and 14 take.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use workshop::body::Body;

use crate::apps::App;

/// Something that answers requests whose bodies are `B`.
pub trait Answer<B>: Send + Sync + 'static {
    fn answer(&self, request: Request<B>) -> impl Future<Output = Response<Body>> + Send;
}

/// A request path with its type forgotten: request in, response out, the
/// response's future on the heap. A server holds one of these, so that its
/// code (hyper's connections, step 14's loop) is compiled once, not once
/// for every request path a program builds.
pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

/// A request path whose future lives on the heap: whoever awaits it holds
/// a pointer. Each layer's future holds its inner layer's, so without it
/// step 17's future is about 60 KiB, moved (copied) several times a request
/// as each layer starts its inner one: a fifth of its instructions went to
/// `memcpy` (cachegrind, `bench/compare.py`'s config). An allocation costs
/// less. Step 17 puts one between its layers; the lessons do without.
pub struct OnHeap<S>(pub S);

impl<S: Answer<B>, B: Send + 'static> Answer<B> for OnHeap<S> {
    fn answer(&self, request: Request<B>) -> impl Future<Output = Response<Body>> + Send {
        Box::pin(self.0.answer(request))
    }
}

/// `answer` as a [`Handler`].
pub fn handler<A: Answer<Incoming>>(answer: Arc<A>) -> Handler {
    Arc::new(move |request| {
        let answer = answer.clone();
        // On the heap: hyper moves the service's future, and a whole
        // request path's is kilobytes; boxed, what moves is a pointer.
        Box::pin(async move { answer.answer(request).await })
    })
}

/// On a response: the app it is for (step 12 marks it; step 15 counts
/// requests by app, step 17 keeps an app's cookies to its own host).
#[derive(Clone)]
pub struct ForApp(pub Arc<App>);
