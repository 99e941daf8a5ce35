//! The state cache a block executes against: records are read from the
//! committed state once, decoded, changed in memory, and written back once
//! when the block is finished. A journal lets one transaction's changes be
//! rolled back when its payload fails.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

use foldhash::fast::RandomState;

use sou_types::{Address, Hash, Symbol};

use crate::lthash::LtHash;
use crate::params::Params;
use crate::state::{
    Account, AssetInfo, Delegation, StateKey, StateValue, UnbondingEntry, Validator, ValidatorSet,
};
use crate::store::StateReader;
use crate::writes::StateWrites;
use crate::{Error, Result};

#[derive(Default)]
struct Slot {
    /// The bytes in committed state when first read (for the state root).
    original: Option<Vec<u8>>,
    current: Option<StateValue>,
    dirty: bool,
}

type Slots = HashMap<StateKey, Slot, RandomState>;

/// Slot maps kept for reuse up to this capacity (about 20 MB; a block of
/// 10,000 transfers needs 16,384).
const SPARE_MAX_CAPACITY: usize = 1 << 17;

thread_local! {
    /// The slot map of the last state cache dropped on this thread, empty,
    /// for the next one: a block's map holds megabytes of slots, and a
    /// fresh one has every page of it faulted in and zeroed again.
    static SPARE_SLOTS: RefCell<Option<Slots>> = const { RefCell::new(None) };
}

/// State changes of a finished block: what to write, and the new LtHash.
#[derive(Debug)]
pub struct StateDiff {
    pub writes: StateWrites,
    pub lthash: LtHash,
}

pub struct StateCache<'a, R: StateReader> {
    reader: &'a R,
    /// A seeded fast hasher: keys are attacker-chosen addresses, and
    /// nothing depends on iteration order (writes are sorted).
    slots: Slots,
    journal: Vec<(StateKey, Option<StateValue>, bool)>,
    /// Between a checkpoint and `settle`: every change is journaled.
    guarded: bool,
}

impl<R: StateReader> std::fmt::Debug for StateCache<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateCache({} records)", self.slots.len())
    }
}

impl<R: StateReader> Drop for StateCache<'_, R> {
    fn drop(&mut self) {
        let mut slots = std::mem::take(&mut self.slots);
        if slots.capacity() > SPARE_MAX_CAPACITY {
            return;
        }
        slots.clear();
        // (Fails only while the thread's locals are being torn down.)
        let _ = SPARE_SLOTS.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare
                .as_ref()
                .is_none_or(|s| s.capacity() <= slots.capacity())
            {
                *spare = Some(slots);
            }
        });
    }
}

/// A position in the journal to roll back to.
#[derive(Clone, Copy, Debug)]
pub struct Checkpoint(usize);

fn decode(key: &StateKey, bytes: &[u8]) -> Result<StateValue> {
    StateValue::decode(key, bytes).map_err(|e| Error::Corrupt {
        what: format!("state record {key:?}"),
        reason: e.to_string(),
    })
}

impl<'a, R: StateReader> StateCache<'a, R> {
    pub fn new(reader: &'a R) -> Self {
        StateCache {
            reader,
            slots: SPARE_SLOTS
                .with(|spare| spare.borrow_mut().take())
                .unwrap_or_default(),
            journal: Vec::new(),
            guarded: false,
        }
    }

    /// Reads every key not yet cached in one batched lookup.
    pub fn prefetch(&mut self, keys: impl IntoIterator<Item = StateKey>) -> Result<()> {
        // Deduplicated by the slot map itself: a key's slot is taken (still
        // empty) the first time it comes. The multi-get does not need its
        // keys in order (each value comes back beside its key).
        // (The map is reused from the last block on this thread, so it
        // rarely grows.)
        let keys = keys.into_iter();
        let mut missing = Vec::with_capacity(keys.size_hint().0);
        for key in keys {
            if let Entry::Vacant(slot) = self.slots.entry(key) {
                missing.push(slot.key().clone());
                slot.insert(Slot::default());
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        // Every key encoded into one buffer.
        let mut buf = Vec::with_capacity(missing.len() * 33);
        let mut ends = Vec::with_capacity(missing.len());
        for key in &missing {
            key.encode_into(&mut buf);
            ends.push(buf.len());
        }
        let mut start = 0;
        let encoded: Vec<&[u8]> = ends
            .iter()
            .map(|&end| {
                let k = &buf[start..end];
                start = end;
                k
            })
            .collect();
        let read = self.reader.multi_get_state(&encoded).and_then(|values| {
            if values.len() != missing.len() {
                return Err(Error::Corrupt {
                    what: "state read".into(),
                    reason: format!("{} values for {} keys", values.len(), missing.len()),
                });
            }
            missing
                .iter()
                .zip(values)
                .map(|(key, bytes)| {
                    let current = bytes.as_deref().map(|b| decode(key, b)).transpose()?;
                    Ok((bytes, current))
                })
                .collect::<Result<Vec<_>>>()
        });
        match read {
            Ok(values) => {
                for (key, (original, current)) in missing.iter().zip(values) {
                    if let Some(slot) = self.slots.get_mut(key) {
                        slot.original = original;
                        slot.current = current;
                    }
                }
                Ok(())
            }
            Err(e) => {
                // No empty slot may stand for a record not read.
                for key in &missing {
                    self.slots.remove(key);
                }
                Err(e)
            }
        }
    }

    /// The key's slot, read from committed state the first time: one hash
    /// and probe of the slot map either way (a transfer asks for its
    /// accounts about ten times).
    fn load(&mut self, key: &StateKey) -> Result<&mut Slot> {
        let StateCache { reader, slots, .. } = self;
        match slots.entry(key.clone()) {
            Entry::Occupied(slot) => Ok(slot.into_mut()),
            Entry::Vacant(slot) => {
                let bytes = reader.get_state(&key.encode())?;
                let current = bytes.as_deref().map(|b| decode(key, b)).transpose()?;
                Ok(slot.insert(Slot {
                    original: bytes,
                    current,
                    dirty: false,
                }))
            }
        }
    }

    fn get(&mut self, key: &StateKey) -> Result<Option<&StateValue>> {
        Ok(self.load(key)?.current.as_ref())
    }

    fn put(&mut self, key: StateKey, value: Option<StateValue>) -> Result<()> {
        let slot = self.load(&key)?;
        let previous = std::mem::replace(&mut slot.current, value);
        let dirty = std::mem::replace(&mut slot.dirty, true);
        self.journal.push((key, previous, dirty));
        Ok(())
    }

    /// Starts journaling (until [`StateCache::settle`]) and returns the
    /// position to roll back to.
    pub fn checkpoint(&mut self) -> Checkpoint {
        self.guarded = true;
        Checkpoint(self.journal.len())
    }

    /// Undoes every change made since `cp`.
    pub fn rollback(&mut self, cp: Checkpoint) {
        while self.journal.len() > cp.0 {
            let Some((key, previous, dirty)) = self.journal.pop() else {
                break;
            };
            if let Some(slot) = self.slots.get_mut(&key) {
                slot.current = previous;
                slot.dirty = dirty;
            }
        }
    }

    /// Forgets the journal: the changes so far can no longer be rolled back.
    pub fn settle(&mut self) {
        self.journal.clear();
        self.guarded = false;
    }

    /// The writes this cache makes to committed state, and the LtHash of the
    /// state after them, starting from `base` (the committed state's LtHash).
    /// Costs in proportion to the records changed, not to the state's size.
    pub fn diff(&self, base: &LtHash) -> StateDiff {
        let mut lthash = base.clone();
        // Room for a key and an account record per slot.
        let mut writes = StateWrites::with_capacity(self.slots.len(), 33 + 64);
        for (key, slot) in &self.slots {
            if !slot.dirty {
                continue;
            }
            let mut write = writes.begin_with(|buf| key.encode_into(buf));
            if let Some(v) = &slot.current {
                v.encode_into(write.value());
            }
            let present = slot.current.is_some();
            if present == slot.original.is_some()
                && slot.original.as_deref().unwrap_or_default() == write.value_bytes()
            {
                write.cancel();
                continue;
            }
            let (k, new) = write.parts();
            lthash.replace(k, slot.original.as_deref(), present.then_some(new));
            write.finish(present);
        }
        // The writes' order does not matter to RocksDB or to the LtHash; a
        // sorted list keeps the output the same on every machine anyway.
        writes.seal();
        StateDiff { writes, lthash }
    }

    // Typed accessors. A missing record reads as the type's empty value
    // where it has one, and writing an empty value deletes the record.

    pub fn params(&mut self) -> Result<Params> {
        match self.get(&StateKey::Params)? {
            Some(StateValue::Params(p)) => Ok(Params::clone(p)),
            _ => Err(Error::Corrupt {
                what: "params".into(),
                reason: "no protocol parameters in state (genesis not written?)".into(),
            }),
        }
    }

    pub fn set_params(&mut self, p: Params) -> Result<()> {
        self.put(StateKey::Params, Some(StateValue::Params(Box::new(p))))
    }

    /// Reads an account without copying it (`None`: no record, the empty account).
    pub fn account_ref(&mut self, a: &Address) -> Result<Option<&Account>> {
        match self.get(&StateKey::Account(*a))? {
            Some(StateValue::Account(acc)) => Ok(Some(acc)),
            _ => Ok(None),
        }
    }

    pub fn is_frozen(&mut self, a: &Address, asset: &Symbol) -> Result<bool> {
        Ok(self.account_ref(a)?.is_some_and(|acc| acc.is_frozen(asset)))
    }

    /// Reads an asset without copying it.
    pub fn asset_ref(&mut self, s: &Symbol) -> Result<Option<&AssetInfo>> {
        match self.get(&StateKey::Asset(*s))? {
            Some(StateValue::Asset(a)) => Ok(Some(a.as_ref())),
            _ => Ok(None),
        }
    }

    pub fn account(&mut self, a: &Address) -> Result<Account> {
        match self.get(&StateKey::Account(*a))? {
            Some(StateValue::Account(acc)) => Ok(acc.clone()),
            _ => Ok(Account::default()),
        }
    }

    /// Changes an account through `f`. Outside a checkpoint nothing can be
    /// rolled back, so the record is changed in place (no copy of it is
    /// made for the journal); inside one, as [`StateCache::set_account`].
    pub fn update_account<T>(
        &mut self,
        a: &Address,
        f: impl FnOnce(&mut Account) -> T,
    ) -> Result<T> {
        if self.guarded {
            let mut acc = self.account(a)?;
            let out = f(&mut acc);
            self.set_account(*a, acc)?;
            return Ok(out);
        }
        let slot = self.load(&StateKey::Account(*a))?;
        let mut acc = match slot.current.take() {
            Some(StateValue::Account(acc)) => acc,
            _ => Account::default(),
        };
        let out = f(&mut acc);
        slot.current = (!acc.is_empty()).then_some(StateValue::Account(acc));
        slot.dirty = true;
        Ok(out)
    }

    pub fn set_account(&mut self, a: Address, acc: Account) -> Result<()> {
        let v = (!acc.is_empty()).then_some(StateValue::Account(acc));
        self.put(StateKey::Account(a), v)
    }

    pub fn asset(&mut self, s: &Symbol) -> Result<Option<AssetInfo>> {
        match self.get(&StateKey::Asset(*s))? {
            Some(StateValue::Asset(a)) => Ok(Some(AssetInfo::clone(a))),
            _ => Ok(None),
        }
    }

    pub fn set_asset(&mut self, a: AssetInfo) -> Result<()> {
        self.put(
            StateKey::Asset(a.symbol),
            Some(StateValue::Asset(Box::new(a))),
        )
    }

    pub fn validator(&mut self, op: &Address) -> Result<Option<Validator>> {
        match self.get(&StateKey::Validator(*op))? {
            Some(StateValue::Validator(v)) => Ok(Some(Validator::clone(v))),
            _ => Ok(None),
        }
    }

    pub fn set_validator(&mut self, v: Validator) -> Result<()> {
        self.put(
            StateKey::Validator(v.operator),
            Some(StateValue::Validator(Box::new(v))),
        )
    }

    pub fn delegation(&mut self, delegator: &Address, validator: &Address) -> Result<Delegation> {
        match self.get(&StateKey::Delegation(*delegator, *validator))? {
            Some(StateValue::Delegation(d)) => Ok(d.clone()),
            _ => Ok(Delegation::default()),
        }
    }

    pub fn set_delegation(
        &mut self,
        delegator: Address,
        validator: Address,
        d: Delegation,
    ) -> Result<()> {
        let v = (d.shares != 0 || d.reward_debt != 0).then_some(StateValue::Delegation(d));
        self.put(StateKey::Delegation(delegator, validator), v)
    }

    pub fn unbonding(&mut self, validator: &Address) -> Result<Vec<UnbondingEntry>> {
        match self.get(&StateKey::Unbonding(*validator))? {
            Some(StateValue::Unbonding(u)) => Ok(u.clone()),
            _ => Ok(Vec::new()),
        }
    }

    pub fn set_unbonding(
        &mut self,
        validator: Address,
        entries: Vec<UnbondingEntry>,
    ) -> Result<()> {
        let v = (!entries.is_empty()).then_some(StateValue::Unbonding(entries));
        self.put(StateKey::Unbonding(validator), v)
    }

    pub fn validator_set(&mut self, epoch: u64) -> Result<Option<ValidatorSet>> {
        match self.get(&StateKey::ValidatorSet(epoch))? {
            Some(StateValue::ValidatorSet(s)) => Ok(Some(s.clone())),
            _ => Ok(None),
        }
    }

    pub fn set_validator_set(&mut self, set: ValidatorSet) -> Result<()> {
        self.put(
            StateKey::ValidatorSet(set.epoch),
            Some(StateValue::ValidatorSet(set)),
        )
    }

    pub fn candidates(&mut self) -> Result<Vec<Address>> {
        match self.get(&StateKey::Candidates)? {
            Some(StateValue::Candidates(c)) => Ok(c.clone()),
            _ => Ok(Vec::new()),
        }
    }

    pub fn set_candidates(&mut self, c: Vec<Address>) -> Result<()> {
        self.put(StateKey::Candidates, Some(StateValue::Candidates(c)))
    }

    pub fn asset_list(&mut self) -> Result<Vec<Symbol>> {
        match self.get(&StateKey::AssetList)? {
            Some(StateValue::AssetList(l)) => Ok(l.clone()),
            _ => Ok(Vec::new()),
        }
    }

    pub fn set_asset_list(&mut self, l: Vec<Symbol>) -> Result<()> {
        self.put(StateKey::AssetList, Some(StateValue::AssetList(l)))
    }

    pub fn evidence_height(&mut self, h: &Hash) -> Result<Option<u64>> {
        match self.get(&StateKey::Evidence(*h))? {
            Some(StateValue::Evidence(height)) => Ok(Some(*height)),
            _ => Ok(None),
        }
    }

    pub fn set_evidence(&mut self, h: Hash, height: u64) -> Result<()> {
        self.put(StateKey::Evidence(h), Some(StateValue::Evidence(height)))
    }
}
