//! The wire format between the host and a plugin's own process: a stream of
//! frames, each `u32` length (little-endian, of what follows) + `u8` kind +
//! body. Strings are length-prefixed UTF-8; events travel in batches packed
//! by size ([`encode_batch`]). Both ends bound every frame by the same
//! [`Limits`], derived from `[host] max_event_bytes`: a frame is never read
//! into memory before its length is checked, and the decoder borrows from
//! the buffer and never panics on any input.

mod decode;
mod encode;
mod format;

pub(crate) use decode::{ReadError, decode, read_frame, shrink};
pub(crate) use encode::{encode, encode_batch};
pub(crate) use format::{
    BATCH_BYTES, Frame, HttpRequestView, HttpResponseView, Limits, Outcome, event_bytes,
};

#[cfg(test)]
mod tests;

/// Property tests for the decoder a child's (possibly corrupt) output goes
/// through: no bytes make it panic, every frame decodes back to itself and
/// nothing else does, and a stream cut anywhere is read up to the cut.
#[cfg(test)]
mod properties;
