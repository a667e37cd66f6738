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

/// `answer` as a [`Handler`].
pub fn handler<A: Answer<Incoming>>(answer: Arc<A>) -> Handler {
    Arc::new(move |request| {
        let answer = answer.clone();
        // On the heap: hyper moves the service's future, and a whole
        // request path's is kilobytes (step 17's, 6 KiB); boxed, what moves
        // is a pointer. One box for all the layers: a box for each (step 17
        // had four) cost more in allocations than it saved in copies
        // (57,700 against 56,800 instructions a request, callgrind).
        Box::pin(async move { answer.answer(request).await })
    })
}

/// On a response: the app it is for (step 12 marks it; step 15 counts
/// requests by app, step 17 keeps an app's cookies to its own host).
#[derive(Clone)]
pub struct ForApp(pub Arc<App>);
