//! One module per page (see the table in [`crate::ui`]).

pub mod audit;
pub mod configs;
pub mod data;
pub mod fleet;
pub mod history;
pub mod key;
pub mod mfa;
pub mod namespaces;
pub mod review;
pub mod signin;
pub mod tokens;
pub mod users;
