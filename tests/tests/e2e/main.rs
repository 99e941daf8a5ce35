//! End-to-end tests: the real `sou` binary, as processes, over real HTTP
//! and WebSocket, on real RocksDB databases. One test binary, so the build
//! links once.

mod cli;
mod helpers;
mod network;
mod node;
mod rpc;
mod wallet;
