//! in-task-auth-code (being written)
pub mod a2a;
pub mod config;
pub mod model;
