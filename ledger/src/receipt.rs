//! Receipts: what became of each transaction in a block.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::Serialize;
use sou_types::{Amount, TxHash};

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub tx_hash: TxHash,
    pub height: u64,
    /// Position in the block.
    pub index: u32,
    /// The fee charged, in base units of the fee asset. Charged whether or
    /// not the payload succeeded.
    pub fee: Amount,
    pub status: TxStatus,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum TxStatus {
    Success,
    /// The payload failed and changed nothing; the nonce was used and the
    /// fee charged.
    Failed {
        reason: String,
    },
}

impl Receipt {
    pub fn succeeded(&self) -> bool {
        matches!(self.status, TxStatus::Success)
    }
}
