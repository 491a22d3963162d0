//! The native token: balances and signed transfers. Only genesis mints, so the total supply
//! is constant.

use super::TxScope;
use ehrchain_types::{AccountId, Field, Hash, Refusal, domain};

/// Moves `amount` from the sender to `to`, or nothing at all.
pub fn transfer(scope: &mut TxScope<'_>, to: &AccountId, amount: u64) -> Result<(), Refusal> {
    if amount == 0 {
        return Err(Refusal::ZeroAmount {
            field: Field::Amount,
        });
    }
    if *to == scope.sender {
        return Err(Refusal::SelfTransfer);
    }
    if *to == escrow_account() {
        return Err(Refusal::TransferToEscrow);
    }
    let from = scope.sender;
    scope.move_tokens(&from, to, amount)
}

/// The account that holds appointment fees between booking and completion. Its id is a
/// tagged hash, not derived from any public key, so nobody can sign for it: only the
/// appointment contract moves its tokens.
pub fn escrow_account() -> AccountId {
    let h: Hash = domain::tagged_hash(domain::ESCROW_ACCOUNT, &[]);
    let mut out = [0u8; 20];
    out.copy_from_slice(&h.0[..20]);
    AccountId(out)
}
