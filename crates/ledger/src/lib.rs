//! The deterministic state machine of ehrchain: the "contracts".
//!
//! [`execute::execute_block`] is a pure function of the state before a block, the block's
//! transactions and the block context (height, time, proposer): no IO, no clock, no
//! randomness. Every honest node that executes the same blocks reaches the same state root.
//! Each transaction either applies fully or not at all; its receipt says which and why.

pub mod access;
pub mod clinical;
pub mod cold;
pub mod contracts;
pub mod error;
pub mod execute;
pub mod pmap;
pub mod state;
pub mod tree;
pub mod verify;

pub use cold::Cold;
pub use error::{BlockError, TxError};
pub use execute::{
    BlockContext, BlockOutput, admit, build_block, execute_block, genesis, genesis_with,
    verify_block, verify_block_with, verify_signatures,
};
pub use state::{
    AccessRequest, Account, AccountStatus, GenesisAccount, GenesisState, Grant, Record,
    RecordStatus, RequestStatus, State, StateKey,
};
pub use verify::{ChainError, verify_chain, verify_chain_state};
