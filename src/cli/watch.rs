//! `get -w`: after the listing, print every change of the watched objects, resuming from the
//! last revision seen and listing again when the server says that revision has expired.

use crate::cli::args::OutputFormat;
use crate::cli::commands::unexpected;
use crate::cli::get::{list, ListScope};
use crate::cli::render::{self, WatchColumns};
use crate::cli::table::TableOpts;
use crate::cli::{print_out, server_error};
use anyhow::{Context, Result};
use chrono::Utc;
use edge_api::wire::{Client, ErrorCode, Request, Response, WireError};
use edge_api::Object;
use std::time::Duration;

/// The state of one kind's watch after the initial listing.
pub struct Watch {
    pub scope: ListScope,
    /// Only these names, when the user named objects.
    pub names: Vec<String>,
    pub format: Option<OutputFormat>,
    pub opts: TableOpts,
    columns: WatchColumns,
}

impl Watch {
    /// A watch whose table rows line up under the table already printed for `shown`.
    pub fn new(
        scope: ListScope,
        names: Vec<String>,
        format: Option<OutputFormat>,
        opts: TableOpts,
        shown: &[Object],
    ) -> Watch {
        let headers = opts.headers(scope.kind);
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let now = Utc::now();
        let rows: Vec<_> = shown.iter().map(|o| opts.row(o, now)).collect();
        Watch {
            columns: WatchColumns::new(&headers, &rows),
            scope,
            names,
            format,
            opts,
        }
    }

    fn wanted(&self, o: &Object) -> bool {
        self.names.is_empty() || self.names.iter().any(|n| *n == o.meta().name)
    }

    /// One changed object as the output format prints it.
    pub fn text(&mut self, o: &Object) -> Result<String> {
        Ok(match self.format {
            Some(OutputFormat::Yaml) => {
                format!("---\n{}", render::to_yaml(std::slice::from_ref(o), false)?)
            }
            Some(OutputFormat::Json) => render::to_json(std::slice::from_ref(o), false)?,
            Some(OutputFormat::Name) => render::object_name(o) + "\n",
            None | Some(OutputFormat::Wide) => {
                let row = self.opts.row(o, Utc::now());
                self.columns.line(&row)
            }
        })
    }

    fn print(&mut self, o: &Object) -> Result<()> {
        if self.wanted(o) {
            let text = self.text(o)?;
            print_out(&text)?;
        }
        Ok(())
    }

    fn request(&self, rv: Option<u64>) -> Request {
        Request::Watch {
            kind: self.scope.kind,
            namespace: self
                .scope
                .namespace
                .clone()
                .filter(|_| self.scope.kind.namespaced()),
            selector: self.scope.selector.clone(),
            resource_version: rv,
        }
    }

    /// Follows events from `rv` until interrupted. A watch the server ends cleanly is resumed
    /// from the last revision seen; an expired revision is answered by listing again.
    pub async fn follow(mut self, client: &Client, mut rv: Option<u64>) -> Result<()> {
        loop {
            let mut stream = client
                .stream(&self.request(rv))
                .await
                .map_err(|e| server_error(e, None))
                .context("cannot start watching")?;
            let mut seen_any = false;
            loop {
                match stream.next().await {
                    Ok(Some(Response::Event(ev))) => {
                        seen_any = true;
                        rv = Some(ev.resource_version);
                        self.print(&ev.object)?;
                    }
                    Ok(Some(other)) => return Err(unexpected("Watch", &other)),
                    Ok(None) => break,
                    Err(WireError::Api(e)) if e.code == ErrorCode::Expired => {
                        let (items, list_rv) = list(client, &self.scope)
                            .await
                            .context("the watch expired and listing again failed")?;
                        for o in &items {
                            self.print(o)?;
                        }
                        rv = Some(list_rv);
                        seen_any = true;
                        break;
                    }
                    Err(e) => {
                        return Err(server_error(e, None)).context("the watch ended");
                    }
                }
            }
            if !seen_any {
                // A server that ends watches at once must not make us spin.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
