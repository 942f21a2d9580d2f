//! One module per page (see the table in [`crate::ui`]).

pub mod fleet;
pub mod history;
pub mod namespaces;
pub mod signin;
