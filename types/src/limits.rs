//! Hard limits of the wire format. They bound what a decoder will accept from
//! anyone; the chain's genesis parameters may set tighter limits, never looser.

/// Largest encoded signed transaction accepted by the decoder, in bytes.
pub const MAX_TX_BYTES: usize = 64 * 1024;
/// Largest memo on a transfer, in bytes.
pub const MAX_MEMO_BYTES: usize = 32;
/// Most recipients of one batch transfer.
pub const MAX_BATCH_RECIPIENTS: usize = 1024;
/// Largest encoded block accepted by the decoder, in bytes.
pub const MAX_BLOCK_BYTES: usize = 64 * 1024 * 1024;
/// Longest chain id, in bytes.
pub const MAX_CHAIN_ID_BYTES: usize = 32;
/// Longest asset symbol, in bytes.
pub const MAX_SYMBOL_BYTES: usize = 8;
