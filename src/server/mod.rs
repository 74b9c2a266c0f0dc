//! The event loop and the application API.

pub mod config;
pub(crate) mod connection;
pub(crate) mod core;
pub mod event_loop;
pub mod handler;
pub(crate) mod static_files;
pub(crate) mod timer;
pub mod tls;
pub mod transport;
pub mod write_buffer;

pub use config::Config;
pub use event_loop::{raise_fd_limit, Server, StopHandle};
pub use handler::{ConnId, Ctx, Handler, Payload, SendStatus, Upgrade};
