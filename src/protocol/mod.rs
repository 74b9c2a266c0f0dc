//! The sans-IO RFC 6455 core: bytes in, frames, messages, events or errors out. Nothing
//! here knows about sockets or the event loop, so the server, the load generator, the
//! fuzz targets and the benches all drive the same code.

pub mod close;
pub mod decoder;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod http1;
pub mod mask;
pub mod utf8;

pub use close::CloseFrame;
pub use decoder::{Decoded, Decoder, Message, Role};
pub use error::{HttpError, ProtocolError};
pub use frame::{FrameHeader, HeaderParse, OpCode};
pub use http1::Request;
