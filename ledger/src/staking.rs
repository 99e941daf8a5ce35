//! Staking: validator registration, delegation as shares of a validator's
//! bonded tokens, unbonding with a waiting period during which the stake is
//! still slashable, fee rewards by stake with the validator's commission,
//! slashing and jailing, and the choice of each epoch's validator set.
//!
//! Rewards use a per-share accumulator (the "reward per share" scheme): each
//! validator keeps the fee rewards paid per delegation share since it
//! registered, and each delegation the part of it already settled. Sharing
//! out a block's fees therefore costs one update per validator, never one
//! per delegator.

use ethnum::U256;
use sou_types::asset::NATIVE;
use sou_types::{Address, Amount, Hash, PublicKey};

use crate::error::TxError;
use crate::exec::{BlockExecutor, Fail, Step};
use crate::params::{BPS, PPM};
use crate::state::{
    bonded_pool, fee_collector, rewards_pool, Delegation, UnbondingEntry, Validator, ValidatorInfo,
    ValidatorSet, REWARD_SCALE,
};
use crate::store::StateReader;
use crate::{Error, Result};

/// `a * b / c`, rounded down, without intermediate overflow; `None` if
/// `c == 0` or the result does not fit in a u128.
pub fn mul_div(a: u128, b: u128, c: u128) -> Option<u128> {
    if c == 0 {
        return None;
    }
    let r = U256::from(a) * U256::from(b) / U256::from(c);
    u128::try_from(r).ok()
}

/// `a * b / c`, rounded up.
pub fn mul_div_ceil(a: u128, b: u128, c: u128) -> Option<u128> {
    if c == 0 {
        return None;
    }
    let c = U256::from(c);
    let r = (U256::from(a) * U256::from(b) + c - U256::ONE) / c;
    u128::try_from(r).ok()
}

/// The epoch that block `height` belongs to: heights `1..=L` are epoch 0,
/// `L+1..=2L` epoch 1, and so on (genesis, height 0, is epoch 0 too).
pub fn epoch_of(height: u64, epoch_length_blocks: u64) -> u64 {
    height.saturating_sub(1) / epoch_length_blocks.max(1)
}

fn pending_rewards(v: &Validator, d: &Delegation) -> u128 {
    mul_div(d.shares, v.reward_per_share, REWARD_SCALE)
        .unwrap_or(u128::MAX)
        .saturating_sub(d.reward_debt)
}

fn settled_debt(v: &Validator, shares: u128) -> u128 {
    mul_div(shares, v.reward_per_share, REWARD_SCALE).unwrap_or(u128::MAX)
}

impl<R: StateReader> BlockExecutor<'_, R> {
    fn validator_checked(&mut self, op: Address) -> Step<Validator> {
        Ok(self
            .cache
            .validator(&op)?
            .ok_or(TxError::NotValidator(op))?)
    }

    /// Pays a delegation's accrued rewards from the rewards pool, capped at
    /// what the pool holds (rounding can leave it a unit short).
    fn pay_rewards(&mut self, delegator: Address, v: &Validator, d: &Delegation) -> Step<Amount> {
        let fee_asset = self.params.fee_asset;
        let pool = self.cache.account(&rewards_pool())?.balance(&fee_asset);
        let owed = Amount(pending_rewards(v, d).min(pool.0));
        if !owed.is_zero() {
            self.move_funds(rewards_pool(), delegator, fee_asset, owed)?;
        }
        Ok(owed)
    }

    pub(crate) fn register_validator(
        &mut self,
        sender: Address,
        consensus_key: PublicKey,
        commission_bps: u16,
    ) -> Step {
        if self.cache.validator(&sender)?.is_some() {
            return Err(TxError::AlreadyValidator(sender).into());
        }
        if commission_bps > BPS {
            return Err(TxError::BadCommission(commission_bps).into());
        }
        consensus_key
            .verifying_key()
            .map_err(|e| TxError::BadConsensusKey(e.to_string()))?;
        let mut candidates = self.cache.candidates()?;
        for op in &candidates {
            if self
                .cache
                .validator(op)?
                .is_some_and(|v| v.consensus_key == consensus_key)
            {
                return Err(
                    TxError::BadConsensusKey(format!("already used by validator {op}")).into(),
                );
            }
        }
        if let Err(i) = candidates.binary_search(&sender) {
            candidates.insert(i, sender);
        }
        self.cache.set_candidates(candidates)?;
        self.cache.set_validator(Validator {
            operator: sender,
            consensus_key,
            commission_bps,
            tokens: Amount::ZERO,
            shares: 0,
            reward_per_share: 0,
            jailed_until: None,
            last_proposed_height: 0,
        })?;
        Ok(())
    }

    /// Bonds `amount` of `from`'s native tokens, already debited or minted
    /// into the bonded pool by the caller, to `validator`.
    fn add_stake(&mut self, delegator: Address, validator: Address, amount: Amount) -> Step {
        if amount.is_zero() {
            return Err(TxError::ZeroAmount.into());
        }
        let mut v = self.validator_checked(validator)?;
        let new_shares = if v.shares == 0 {
            amount.0
        } else if v.tokens.is_zero() {
            return Err(TxError::ValidatorEmpty(validator).into());
        } else {
            mul_div(amount.0, v.shares, v.tokens.0).ok_or(TxError::Overflow("delegation shares"))?
        };
        if new_shares == 0 {
            return Err(TxError::ZeroAmount.into());
        }
        let mut d = self.cache.delegation(&delegator, &validator)?;
        self.pay_rewards(delegator, &v, &d)?;
        d.shares = d
            .shares
            .checked_add(new_shares)
            .ok_or(TxError::Overflow("delegation shares"))?;
        v.shares = v
            .shares
            .checked_add(new_shares)
            .ok_or(TxError::Overflow("validator shares"))?;
        v.tokens = v
            .tokens
            .checked_add(amount)
            .ok_or(TxError::Overflow("validator stake"))?;
        d.reward_debt = settled_debt(&v, d.shares);
        self.cache.set_delegation(delegator, validator, d)?;
        self.cache.set_validator(v)?;
        Ok(())
    }

    pub(crate) fn bond(&mut self, sender: Address, validator: Address, amount: Amount) -> Step {
        self.add_stake(sender, validator, amount)?;
        self.move_funds(sender, bonded_pool(), NATIVE, amount)
    }

    pub(crate) fn unbond(&mut self, sender: Address, validator: Address, amount: Amount) -> Step {
        if amount.is_zero() {
            return Err(TxError::ZeroAmount.into());
        }
        let mut v = self.validator_checked(validator)?;
        let mut d = self.cache.delegation(&sender, &validator)?;
        let worth = Amount(mul_div(d.shares, v.tokens.0, v.shares).unwrap_or(0));
        if worth < amount {
            return Err(TxError::InsufficientDelegation {
                have: worth,
                need: amount,
            }
            .into());
        }
        let burn = mul_div_ceil(amount.0, v.shares, v.tokens.0)
            .ok_or(TxError::Overflow("delegation shares"))?
            .min(d.shares);
        let mut entries = self.cache.unbonding(&validator)?;
        let max = self.params.max_unbonding_entries;
        if entries.iter().filter(|e| e.delegator == sender).count() >= max as usize {
            return Err(TxError::TooManyUnbondings { max }.into());
        }
        self.pay_rewards(sender, &v, &d)?;
        d.shares -= burn; // burn <= d.shares, taken with min above
        v.shares = v
            .shares
            .checked_sub(burn)
            .ok_or(TxError::Overflow("validator shares"))?;
        v.tokens = v
            .tokens
            .checked_sub(amount)
            .ok_or(TxError::Overflow("validator stake"))?;
        d.reward_debt = settled_debt(&v, d.shares);
        entries.push(UnbondingEntry {
            delegator: sender,
            amount,
            complete_height: self
                .ctx
                .height
                .saturating_add(self.params.unbonding_period_blocks),
        });
        self.cache.set_delegation(sender, validator, d)?;
        self.cache.set_validator(v)?;
        self.cache.set_unbonding(validator, entries)?;
        Ok(())
    }

    pub(crate) fn withdraw(&mut self, sender: Address, validator: Address) -> Step {
        let height = self.ctx.height;
        let entries = self.cache.unbonding(&validator)?;
        let (matured, rest): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .partition(|e| e.delegator == sender && e.complete_height <= height);
        if matured.is_empty() {
            return Err(TxError::NothingToWithdraw(validator).into());
        }
        let total = matured
            .iter()
            .try_fold(Amount::ZERO, |acc, e| acc.checked_add(e.amount))
            .ok_or(TxError::Overflow("withdrawal"))?;
        self.cache.set_unbonding(validator, rest)?;
        if !total.is_zero() {
            self.move_funds(bonded_pool(), sender, NATIVE, total)?;
        }
        Ok(())
    }

    pub(crate) fn claim_rewards(&mut self, sender: Address, validator: Address) -> Step {
        let v = self.validator_checked(validator)?;
        let mut d = self.cache.delegation(&sender, &validator)?;
        let paid = self.pay_rewards(sender, &v, &d)?;
        if paid.is_zero() {
            return Err(TxError::NoRewards(validator).into());
        }
        d.reward_debt = settled_debt(&v, d.shares);
        self.cache.set_delegation(sender, validator, d)?;
        Ok(())
    }

    pub(crate) fn unjail(&mut self, sender: Address) -> Step {
        let mut v = self.validator_checked(sender)?;
        match v.jailed_until {
            None => return Err(TxError::NotJailed(sender).into()),
            Some(u64::MAX) => return Err(TxError::JailedForGood(sender).into()),
            Some(until) if self.ctx.height < until => {
                return Err(TxError::StillJailed {
                    validator: sender,
                    until,
                }
                .into())
            }
            Some(_) => v.jailed_until = None,
        }
        self.cache.set_validator(v)?;
        Ok(())
    }

    /// Slashes `fraction_ppm` parts per million of `validator`'s bonded
    /// stake and of its unbonding entries that have not yet matured, for the
    /// misbehaviour that `evidence` (the hash of self-contained evidence)
    /// proves. The slashed tokens are burned. Each piece of evidence slashes
    /// once. Returns the amount burned.
    pub fn slash(
        &mut self,
        validator: Address,
        fraction_ppm: u32,
        evidence: Hash,
    ) -> Result<Amount> {
        self.slash_step(validator, fraction_ppm, evidence)
            .map_err(fatal)
    }

    fn slash_step(
        &mut self,
        validator: Address,
        fraction_ppm: u32,
        evidence: Hash,
    ) -> Step<Amount> {
        if fraction_ppm > PPM {
            return Err(TxError::BadFraction(fraction_ppm).into());
        }
        if self.cache.evidence_height(&evidence)?.is_some() {
            return Err(TxError::EvidenceUsed(evidence).into());
        }
        let mut v = self.validator_checked(validator)?;
        let ppm = u128::from(fraction_ppm);
        let from_bonded = mul_div(v.tokens.0, ppm, u128::from(PPM)).unwrap_or(0);
        v.tokens = Amount(v.tokens.0 - from_bonded);
        let height = self.ctx.height;
        let mut entries = self.cache.unbonding(&validator)?;
        let mut from_unbonding = 0u128;
        for e in entries.iter_mut().filter(|e| e.complete_height > height) {
            let cut = mul_div(e.amount.0, ppm, u128::from(PPM)).unwrap_or(0);
            e.amount = Amount(e.amount.0 - cut);
            from_unbonding += cut;
        }
        let burned = Amount(from_bonded + from_unbonding);
        self.debit(bonded_pool(), NATIVE, burned)?;
        let mut native = self.asset_info(NATIVE)?;
        native.supply = native
            .supply
            .checked_sub(burned)
            .ok_or(TxError::Overflow("supply"))?;
        self.cache.set_asset(native)?;
        self.cache.set_validator(v)?;
        self.cache.set_unbonding(validator, entries)?;
        self.cache.set_evidence(evidence, height)?;
        self.cache.settle();
        Ok(burned)
    }

    /// Jails `validator` until `until_height` (`u64::MAX`: for good). It
    /// leaves the validator set at the next epoch boundary and may ask to
    /// return with an unjail transaction once the height is reached.
    pub fn jail(&mut self, validator: Address, until_height: u64) -> Result<()> {
        let mut v = self.validator_checked(validator).map_err(fatal)?;
        v.jailed_until = Some(v.jailed_until.map_or(until_height, |u| u.max(until_height)));
        self.cache.set_validator(v)?;
        self.cache.settle();
        Ok(())
    }

    /// Fees, then (at an epoch's last block) the next validator set.
    pub(crate) fn end_block(&mut self) -> Result<()> {
        let fees = std::mem::take(&mut self.fees);
        let fee_asset = self.params.fee_asset;
        let credited = if fees.is_zero() {
            Ok(())
        } else {
            self.credit(fee_collector(), fee_asset, fees)
        };
        credited
            .and_then(|()| self.distribute_fees())
            .map_err(|f| match f {
                Fail::Fatal(e) => e,
                Fail::Tx(e) => Error::Corrupt {
                    what: "fee distribution".into(),
                    reason: e.to_string(),
                },
            })?;
        self.track_liveness()?;
        let length = self.params.epoch_length_blocks.max(1);
        if self.ctx.height.is_multiple_of(length) {
            self.elect(self.ctx.height / length)?;
        }
        Ok(())
    }

    /// Downtime: records that this block's proposer proposed, and jails
    /// (and slashes `slash_downtime_ppm` of) each validator of the epoch's
    /// set that has proposed none of the epoch's blocks for longer than it
    /// would take, at its share of the power, to propose
    /// `downtime_missed_proposals` of them. Leaders rotate by stake, so an
    /// honest validator that is up proposes its share; one that is down or
    /// cut off proposes nothing.
    fn track_liveness(&mut self) -> Result<()> {
        let height = self.ctx.height;
        let length = self.params.epoch_length_blocks.max(1);
        let expected = u128::from(self.params.downtime_missed_proposals);
        let epoch = epoch_of(height, length);
        if height == 0 || expected == 0 {
            return Ok(());
        }
        let Some(set) = self.cache.validator_set(epoch)? else {
            return Ok(());
        };
        let total = set.total_power();
        let epoch_start = epoch * length; // the block before the epoch's first
        for member in &set.validators {
            let Some(mut v) = self.cache.validator(&member.operator)? else {
                continue;
            };
            if member.operator == self.ctx.proposer {
                v.last_proposed_height = height;
                self.cache.set_validator(v)?;
                continue;
            }
            if v.jailed_until.is_some_and(|until| until > height) || member.power.0 == 0 {
                continue;
            }
            let window = mul_div(expected, total, member.power.0).unwrap_or(u128::MAX);
            let since = v.last_proposed_height.max(epoch_start);
            if u128::from(height - since) > window {
                let mut tag = member.operator.0.to_vec();
                tag.extend_from_slice(&height.to_be_bytes());
                let id = Hash::domain("sou downtime v1", &tag);
                let fraction = self.params.slash_downtime_ppm;
                self.slash(member.operator, fraction, id)?;
                let until = height.saturating_add(self.params.downtime_jail_blocks);
                self.jail(member.operator, until)?;
            }
        }
        Ok(())
    }

    /// Shares the fee collector's balance among this epoch's validators in
    /// proportion to their power; each validator's commission goes to its
    /// operator and the rest to its delegators (through reward per share).
    /// Whatever rounds away stays in the collector for the next block.
    fn distribute_fees(&mut self) -> Step {
        let fee_asset = self.params.fee_asset;
        let total_fees = self.cache.account(&fee_collector())?.balance(&fee_asset);
        if total_fees.is_zero() {
            return Ok(());
        }
        let epoch = epoch_of(self.ctx.height, self.params.epoch_length_blocks);
        let Some(set) = self.cache.validator_set(epoch)? else {
            return Ok(());
        };
        let total_power = set.total_power();
        for member in &set.validators {
            let share = mul_div(total_fees.0, member.power.0, total_power).unwrap_or(0);
            let Some(mut v) = self.cache.validator(&member.operator)? else {
                continue;
            };
            if share == 0 {
                continue;
            }
            let mut commission =
                mul_div(share, u128::from(v.commission_bps), u128::from(BPS)).unwrap_or(0);
            let mut to_delegators = share - commission;
            let increment = mul_div(to_delegators, REWARD_SCALE, v.shares).unwrap_or(0);
            match v.reward_per_share.checked_add(increment) {
                Some(rps) if increment > 0 => {
                    v.reward_per_share = rps;
                    self.cache.set_validator(v)?;
                }
                // No delegators, or nothing representable per share: the
                // operator takes the whole share.
                _ => {
                    commission = share;
                    to_delegators = 0;
                }
            }
            let operator_frozen = self.cache.account(&member.operator)?.is_frozen(&fee_asset);
            if commission > 0 && !operator_frozen {
                self.move_funds(
                    fee_collector(),
                    member.operator,
                    fee_asset,
                    Amount(commission),
                )?;
            }
            if to_delegators > 0 {
                self.move_funds(
                    fee_collector(),
                    rewards_pool(),
                    fee_asset,
                    Amount(to_delegators),
                )?;
            }
        }
        Ok(())
    }

    /// Chooses the validator set of `epoch`: the top `max_validators`
    /// unjailed candidates with at least the minimum stake, by stake, ties
    /// broken by address. An empty result keeps the current set, so the
    /// chain can never be left without validators.
    fn elect(&mut self, epoch: u64) -> Result<()> {
        let mut members = Vec::new();
        for op in self.cache.candidates()? {
            let Some(v) = self.cache.validator(&op)? else {
                continue;
            };
            if v.jailed_until.is_none()
                && v.tokens >= self.params.min_validator_stake
                && !v.tokens.is_zero()
            {
                members.push(ValidatorInfo {
                    operator: v.operator,
                    consensus_key: v.consensus_key,
                    power: v.tokens,
                });
            }
        }
        members.sort_by(|a, b| b.power.cmp(&a.power).then(a.operator.cmp(&b.operator)));
        members.truncate(self.params.max_validators as usize);
        let validators = if members.is_empty() {
            let current = self
                .cache
                .validator_set(epoch.saturating_sub(1))?
                .unwrap_or_default();
            current.validators
        } else {
            members
        };
        self.cache
            .set_validator_set(ValidatorSet { epoch, validators })?;
        self.cache.settle();
        Ok(())
    }

    /// Genesis only: registers a validator with `stake` native tokens that
    /// the caller has already credited to the bonded pool.
    pub(crate) fn genesis_validator(
        &mut self,
        operator: Address,
        consensus_key: PublicKey,
        commission_bps: u16,
        stake: Amount,
    ) -> Result<()> {
        self.register_validator(operator, consensus_key, commission_bps)
            .and_then(|()| self.add_stake(operator, operator, stake))
            .map_err(fatal)?;
        self.cache.settle();
        Ok(())
    }
}

fn fatal(f: Fail) -> Error {
    match f {
        Fail::Fatal(e) => e,
        Fail::Tx(e) => Error::Rejected(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mul_div_edges() {
        assert_eq!(mul_div(u128::MAX, u128::MAX, u128::MAX), Some(u128::MAX));
        assert_eq!(mul_div(1, 1, 0), None);
        assert_eq!(mul_div(u128::MAX, 2, 1), None);
        assert_eq!(mul_div_ceil(7, 1, 2), Some(4));
        assert_eq!(mul_div(7, 1, 2), Some(3));
        assert_eq!(epoch_of(0, 10), 0);
        assert_eq!(epoch_of(10, 10), 0);
        assert_eq!(epoch_of(11, 10), 1);
    }

    proptest! {
        #[test]
        fn mul_div_matches_small_arithmetic(a in 0u128..1<<60, b in 0u128..1<<60, c in 1u128..1<<60) {
            prop_assert_eq!(mul_div(a, b, c), Some(a * b / c));
            prop_assert_eq!(mul_div_ceil(a, b, c), Some((a * b).div_ceil(c)));
        }
    }
}
