//! The per-instance store state shared by commands and HTTP handlers: WASI context (args, env, stdio, volumes, grants), wasi:http with the egress check, limiter.

use std::future::Future;
use std::sync::Arc;

use http_body_util::BodyExt;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use crate::grants::NetworkPolicy;
use crate::limits::Limiter;
use crate::output::{RateLimitedSink, SinkStdio};
use crate::preopen::{self, Preopen};
use crate::{OutputSink, OutputStream, RuntimeError};

/// What a guest instance gets to see of the host.
pub(crate) struct Sandbox<'a> {
    pub(crate) digest: &'a str,
    pub(crate) args: &'a [String],
    pub(crate) env: &'a [(String, String)],
    pub(crate) preopens: &'a [Preopen],
    pub(crate) policy: &'a Arc<NetworkPolicy>,
    pub(crate) output: &'a Arc<RateLimitedSink>,
}

impl Sandbox<'_> {
    /// A WASI context builder with exactly these capabilities and nothing inherited from the
    /// host process (no host env, stdin closed, no filesystem beyond the preopens).
    pub(crate) fn wasi_builder(&self) -> Result<WasiCtxBuilder, RuntimeError> {
        let mut builder = WasiCtxBuilder::new();
        let sink: Arc<dyn OutputSink> = Arc::clone(self.output) as Arc<dyn OutputSink>;
        builder
            .args(self.args)
            .envs(self.env)
            .stdout(SinkStdio::new(Arc::clone(&sink), OutputStream::Stdout))
            .stderr(SinkStdio::new(sink, OutputStream::Stderr));
        preopen::apply(&mut builder, self.preopens, self.digest)?;
        self.policy.apply(&mut builder);
        Ok(builder)
    }

    /// The store state for a component instance.
    pub(crate) fn host_state(
        &self,
        memory_limit_bytes: Option<u64>,
    ) -> Result<HostState, RuntimeError> {
        Ok(HostState {
            wasi: self.wasi_builder()?.build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: EgressHooks {
                policy: Arc::clone(self.policy),
            },
            limiter: Limiter::new(memory_limit_bytes),
        })
    }
}

/// Per-instance store data for components (commands and HTTP handlers alike).
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: EgressHooks,
    pub(crate) limiter: Limiter,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outgoing wasi:http requests: checked against the grants before any connection is made.
pub(crate) struct EgressHooks {
    policy: Arc<NetworkPolicy>,
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let uri = request.uri();
        let host = uri.host().unwrap_or_default().to_string();
        let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
            443
        } else {
            80
        };
        let port = uri.port_u16().unwrap_or(default_port);
        let routed = (uri.scheme() != Some(&http::uri::Scheme::HTTPS))
            .then(|| self.policy.service_route(&host, uri.port_u16()))
            .flatten();
        if let Some(to) = routed {
            let request = crate::grants::retarget(request, to);
            return Box::new(async move {
                let (response, io) =
                    wasmtime_wasi_http::default_send_request(request, options).await?;
                Ok((
                    response.map(BodyExt::boxed_unsync),
                    Box::new(io) as Box<dyn Future<Output = _> + Send>,
                ))
            });
        }
        if !self.policy.http_allowed(&host, port) {
            // The guest sees `error-code::http-request-denied`; nothing was connected.
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// A component linker with all of WASI p2 and wasi:http (outgoing requests and types).
pub(crate) fn component_linker(
    engine: &wasmtime::Engine,
) -> Result<Linker<HostState>, RuntimeError> {
    let mut linker = Linker::new(engine);
    let engine_error = |e: wasmtime::Error| RuntimeError::Engine {
        message: format!("cannot add WASI to the linker: {e:#}"),
    };
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_error)?;
    Ok(linker)
}
