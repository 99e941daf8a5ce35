//! Asset transactions: transfers, and the stablecoin controls (mint, burn,
//! minters, freeze, seize, pause), each checked against the role that holds it.

use sou_types::{Address, Amount, Payout, Symbol};

use crate::error::TxError;
use crate::exec::{BlockExecutor, Step};
use crate::state::{Account, AssetInfo, AssetRoles};
use crate::store::StateReader;

/// The roles of [`AssetRoles`], by name, for error messages.
#[derive(Clone, Copy)]
enum Role {
    Issuer,
    MasterMinter,
    Pauser,
    Freezer,
}

impl Role {
    fn holder(self, roles: &AssetRoles) -> Option<Address> {
        match self {
            Role::Issuer => roles.issuer,
            Role::MasterMinter => roles.master_minter,
            Role::Pauser => roles.pauser,
            Role::Freezer => roles.freezer,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Issuer => "issuer",
            Role::MasterMinter => "master minter",
            Role::Pauser => "pauser",
            Role::Freezer => "freezer",
        }
    }
}

impl<R: StateReader> BlockExecutor<'_, R> {
    pub(crate) fn asset_info(&mut self, asset: Symbol) -> Step<AssetInfo> {
        Ok(self
            .cache
            .asset(&asset)?
            .ok_or(TxError::UnknownAsset(asset))?)
    }

    fn require_role(&mut self, sender: Address, asset: Symbol, role: Role) -> Step<AssetInfo> {
        let info = self.asset_info(asset)?;
        if role.holder(&info.roles) != Some(sender) {
            return Err(TxError::NotRole {
                sender,
                role: role.name(),
                asset,
            }
            .into());
        }
        Ok(info)
    }

    fn require_not_frozen(&mut self, address: Address, asset: Symbol) -> Step {
        if self.cache.is_frozen(&address, &asset)? {
            return Err(TxError::Frozen { address, asset }.into());
        }
        Ok(())
    }

    /// Takes `amount` of `asset` from `from`'s balance.
    pub(crate) fn debit(&mut self, from: Address, asset: Symbol, amount: Amount) -> Step {
        let mut acc = self.cache.account(&from)?;
        let have = acc.balance(&asset);
        let left = have
            .checked_sub(amount)
            .ok_or(TxError::InsufficientBalance {
                asset,
                have,
                need: amount,
            })?;
        acc.set_balance(asset, left);
        self.cache.set_account(from, acc)?;
        Ok(())
    }

    /// Adds `amount` of `asset` to `to`'s balance.
    pub(crate) fn credit(&mut self, to: Address, asset: Symbol, amount: Amount) -> Step {
        let mut acc = self.cache.account(&to)?;
        let total = acc
            .balance(&asset)
            .checked_add(amount)
            .ok_or(TxError::Overflow("recipient balance"))?;
        acc.set_balance(asset, total);
        self.cache.set_account(to, acc)?;
        Ok(())
    }

    pub(crate) fn move_funds(
        &mut self,
        from: Address,
        to: Address,
        asset: Symbol,
        amount: Amount,
    ) -> Step {
        self.debit(from, asset, amount)?;
        self.credit(to, asset, amount)
    }

    /// The checks every transfer of an issued asset makes: the asset exists
    /// and is not paused, and the sender is not frozen in it.
    fn transfer_checks(&mut self, sender: Address, asset: Symbol) -> Step {
        let paused = self
            .cache
            .asset_ref(&asset)?
            .ok_or(TxError::UnknownAsset(asset))?
            .paused;
        if paused {
            return Err(TxError::Paused(asset).into());
        }
        self.require_not_frozen(sender, asset)
    }

    /// The hot path. Every check comes before the first write (the
    /// executor relies on it: a transfer runs without a journal), and the
    /// two accounts are changed in place.
    pub(crate) fn transfer(
        &mut self,
        sender: Address,
        asset: Symbol,
        to: Address,
        amount: Amount,
    ) -> Step {
        if amount.is_zero() {
            return Err(TxError::ZeroAmount.into());
        }
        self.transfer_checks(sender, asset)?;
        self.require_not_frozen(to, asset)?;
        let balance = |acc: Option<&Account>| acc.map_or(Amount::ZERO, |a| a.balance(&asset));
        let have = balance(self.cache.account_ref(&sender)?);
        let left = have
            .checked_sub(amount)
            .ok_or(TxError::InsufficientBalance {
                asset,
                have,
                need: amount,
            })?;
        if sender == to {
            return Ok(());
        }
        let total = balance(self.cache.account_ref(&to)?)
            .checked_add(amount)
            .ok_or(TxError::Overflow("recipient balance"))?;
        self.cache
            .update_account(&sender, |a| a.set_balance(asset, left))?;
        self.cache
            .update_account(&to, |a| a.set_balance(asset, total))?;
        Ok(())
    }

    pub(crate) fn batch_transfer(
        &mut self,
        sender: Address,
        asset: Symbol,
        payouts: &[Payout],
    ) -> Step {
        self.transfer_checks(sender, asset)?;
        for p in payouts {
            if p.amount.is_zero() {
                return Err(TxError::ZeroAmount.into());
            }
            self.require_not_frozen(p.to, asset)?;
            self.move_funds(sender, p.to, asset, p.amount)?;
        }
        Ok(())
    }

    pub(crate) fn mint(
        &mut self,
        sender: Address,
        asset: Symbol,
        to: Address,
        amount: Amount,
    ) -> Step {
        if amount.is_zero() {
            return Err(TxError::ZeroAmount.into());
        }
        let mut info = self.asset_info(asset)?;
        if info.paused {
            return Err(TxError::Paused(asset).into());
        }
        let allowance = info
            .allowance(&sender)
            .ok_or(TxError::NotMinter { sender, asset })?;
        let left = allowance
            .checked_sub(amount)
            .ok_or(TxError::OverAllowance { amount, allowance })?;
        self.require_not_frozen(sender, asset)?;
        self.require_not_frozen(to, asset)?;
        info.supply = info
            .supply
            .checked_add(amount)
            .ok_or(TxError::Overflow("supply"))?;
        info.set_minter(sender, Some(left));
        self.cache.set_asset(info)?;
        self.credit(to, asset, amount)
    }

    pub(crate) fn burn(&mut self, sender: Address, asset: Symbol, amount: Amount) -> Step {
        if amount.is_zero() {
            return Err(TxError::ZeroAmount.into());
        }
        let mut info = self.asset_info(asset)?;
        if info.paused {
            return Err(TxError::Paused(asset).into());
        }
        if info.allowance(&sender).is_none() {
            return Err(TxError::NotMinter { sender, asset }.into());
        }
        self.require_not_frozen(sender, asset)?;
        self.debit(sender, asset, amount)?;
        info.supply = info
            .supply
            .checked_sub(amount)
            .ok_or(TxError::Overflow("supply"))?;
        self.cache.set_asset(info)?;
        Ok(())
    }

    pub(crate) fn configure_minter(
        &mut self,
        sender: Address,
        asset: Symbol,
        minter: Address,
        allowance: Option<Amount>,
    ) -> Step {
        let mut info = self.require_role(sender, asset, Role::MasterMinter)?;
        if allowance.is_none() && info.allowance(&minter).is_none() {
            return Err(TxError::NotMinter {
                sender: minter,
                asset,
            }
            .into());
        }
        info.set_minter(minter, allowance);
        self.cache.set_asset(info)?;
        Ok(())
    }

    pub(crate) fn set_frozen(
        &mut self,
        sender: Address,
        asset: Symbol,
        address: Address,
        frozen: bool,
    ) -> Step {
        self.require_role(sender, asset, Role::Freezer)?;
        let mut acc = self.cache.account(&address)?;
        match (acc.is_frozen(&asset), frozen) {
            (true, true) => return Err(TxError::Frozen { address, asset }.into()),
            (false, false) => return Err(TxError::NotFrozen { address, asset }.into()),
            _ => {}
        }
        acc.set_frozen(asset, frozen);
        self.cache.set_account(address, acc)?;
        Ok(())
    }

    pub(crate) fn seize(&mut self, sender: Address, asset: Symbol, address: Address) -> Step {
        let info = self.require_role(sender, asset, Role::Issuer)?;
        let acc = self.cache.account(&address)?;
        if !acc.is_frozen(&asset) {
            return Err(TxError::NotFrozen { address, asset }.into());
        }
        let amount = acc.balance(&asset);
        if amount.is_zero() {
            return Err(TxError::ZeroAmount.into());
        }
        let issuer = info.roles.issuer.unwrap_or(sender);
        self.move_funds(address, issuer, asset, amount)
    }

    pub(crate) fn set_paused(&mut self, sender: Address, asset: Symbol, paused: bool) -> Step {
        let mut info = self.require_role(sender, asset, Role::Pauser)?;
        match (info.paused, paused) {
            (true, true) => return Err(TxError::Paused(asset).into()),
            (false, false) => return Err(TxError::NotPaused(asset).into()),
            _ => {}
        }
        info.paused = paused;
        self.cache.set_asset(info)?;
        Ok(())
    }
}
