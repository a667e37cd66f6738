//! Step 04: response headers cross, repeated ones stay repeated.

use crate::ensure;
use crate::harness::client::get;
use crate::harness::{Ctx, Outcome};

pub async fn response_headers_copied(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let reply = get(proxy.addr, "/headers?add=X-From-Origin:yes").await?;
    let content_type = reply.header_values("content-type");
    let custom = reply.header_values("x-from-origin");
    ensure!(
        content_type
            .first()
            .is_some_and(|value| value.starts_with("text/plain"))
            && custom == ["yes"],
        "the origin answered with Content-Type: text/plain and X-From-Origin: yes, the client got \
         Content-Type {content_type:?} and X-From-Origin {custom:?}: are the response headers copied?"
    );
    Ok(())
}

pub async fn repeated_response_headers(ctx: Ctx) -> Outcome {
    let proxy = ctx.proxy().await?;
    let reply = get(proxy.addr, "/headers").await?;
    let cookies = reply.header_values("set-cookie");
    ensure!(
        cookies == ["a=1; Path=/", "b=2; Path=/"],
        "the origin set two cookies (a=1 then b=2), the client got {cookies:?}: \
         HeaderMap::insert keeps only the last value, append keeps them all"
    );
    let order = reply.header_values("x-order");
    ensure!(
        order == ["first", "second"],
        "X-Order: first, then second, became {order:?}: order within a name must be kept"
    );
    Ok(())
}
