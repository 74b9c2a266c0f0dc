//! The event loop and the application API.

pub mod config;
pub(crate) mod connection;
pub(crate) mod core;
pub mod event_loop;
pub mod handler;
pub mod metrics;
pub(crate) mod static_files;
pub(crate) mod timer;
pub mod write_buffer;

pub use config::{Config, ConfigError};
pub use event_loop::{raise_fd_limit, Server, StopHandle};
pub use handler::{ConnId, Ctx, Handler, Payload, SendStatus, Upgrade};
