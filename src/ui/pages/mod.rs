//! One module per page (see the table in [`crate::ui`]).

pub mod namespaces;
pub mod signin;
