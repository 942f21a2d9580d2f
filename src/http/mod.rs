//! HTTP plumbing shared by the sidecar and the admin: the accept loop with its limits and
//! graceful drain ([`server`]), the route table that labels the request metrics ([`routes`]),
//! the JSON error shape and extractors ([`error`]), and the headers every config read carries
//! ([`headers`]).

pub mod drain;
pub mod error;
pub mod fast_conn;
pub mod head_timer;
pub mod headers;
pub mod host;
pub mod query;
pub mod routes;
pub mod server;
pub mod tls;

pub use error::{ApiError, ApiJson, ApiQuery};
pub use query::NoQuery;
