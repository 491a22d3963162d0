//! The native token: balances and signed transfers. Only genesis mints, so the total supply
//! is constant.

use super::TxScope;
use crate::TxError;
use ehrchain_types::AccountId;

/// Moves `amount` from the sender to `to`, or nothing at all.
pub fn transfer(scope: &mut TxScope<'_>, to: &AccountId, amount: u64) -> Result<(), TxError> {
    if amount == 0 {
        return Err(TxError::ZeroAmount);
    }
    if *to == scope.sender {
        return Err(TxError::SelfTransfer);
    }
    let mut from = scope.account(&scope.sender);
    if from.balance < amount {
        return Err(TxError::InsufficientBalance {
            balance: from.balance,
            needed: amount,
        });
    }
    let mut dest = scope.account(to);
    dest.balance = dest
        .balance
        .checked_add(amount)
        .ok_or(TxError::Overflow(*to))?;
    from.balance -= amount;
    scope.put(scope.sender, from);
    scope.put(*to, dest);
    Ok(())
}
