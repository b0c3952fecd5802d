//! Requests paused until something the VM is fetching arrives (keys, an
//! exchanged token). The root context that receives it decides each waiting
//! request again in that request's own context.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::types::Action;

/// A paused request.
#[derive(Debug)]
pub struct Waiter<R> {
    /// What the filter needs to decide it again.
    pub request: R,
    /// When it started waiting (seconds).
    pub since: u64,
}

/// The paused requests of one VM, by context id.
#[derive(Debug)]
pub struct Waiters<R> {
    map: HashMap<u32, Waiter<R>>,
}

impl<R> Default for Waiters<R> {
    fn default() -> Self {
        Self { map: HashMap::new() }
    }
}

impl<R> Waiters<R> {
    /// Pauses request `context_id`.
    pub fn insert(&mut self, context_id: u32, request: R, since: u64) {
        self.map.insert(context_id, Waiter { request, since });
    }

    /// Forgets a request (it went away).
    pub fn remove(&mut self, context_id: u32) -> Option<Waiter<R>> {
        self.map.remove(&context_id)
    }

    /// Whether request `context_id` waits.
    pub fn contains(&self, context_id: u32) -> bool {
        self.map.contains_key(&context_id)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Number of waiting requests.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Takes the waiting requests `select` picks.
    pub fn take(&mut self, mut select: impl FnMut(&Waiter<R>) -> bool) -> Vec<(u32, Waiter<R>)> {
        let ids: Vec<u32> = self.map.iter().filter(|(_, waiter)| select(waiter)).map(|(id, _)| *id).collect();
        ids.into_iter().filter_map(|id| self.map.remove(&id).map(|waiter| (id, waiter))).collect()
    }
}

/// Makes request `context_id` the effective context, so the host calls
/// that follow (headers, resume, local reply) apply to it. False when the
/// request is gone.
pub fn enter_context(context_id: u32) -> bool {
    hostcalls::set_effective_context(context_id).is_ok()
}

/// Resumes the effective (paused) request.
pub fn resume_request() -> bool {
    hostcalls::resume_http_request().is_ok()
}

/// A VM's state that tracks paused requests.
pub trait WaitingRequests {
    /// Whether request `context_id` still waits.
    fn is_waiting(&self, context_id: u32) -> bool;
    /// Forgets request `context_id` (it went away).
    fn forget(&mut self, context_id: u32);
}

/// A request context's side of pausing: holds the body while the request
/// waits, and withdraws the request from the VM's waiters when it goes away.
#[derive(Debug)]
pub struct PauseGuard<V: WaitingRequests> {
    vm: Rc<RefCell<Option<V>>>,
    context_id: u32,
    waiting: bool,
}

impl<V: WaitingRequests> PauseGuard<V> {
    /// A guard for request `context_id`.
    pub fn new(vm: Rc<RefCell<Option<V>>>, context_id: u32) -> Self {
        Self { vm, context_id, waiting: false }
    }

    /// The request now waits.
    pub fn mark_waiting(&mut self) {
        self.waiting = true;
    }

    /// What a body or trailers callback answers: continuing data while the
    /// headers wait would let the request through unchecked, so hold (and
    /// buffer) it until the decision.
    pub fn data_action(&mut self) -> Action {
        if self.waiting {
            self.waiting = match self.vm.try_borrow() {
                Ok(slot) => slot.as_ref().is_some_and(|vm| vm.is_waiting(self.context_id)),
                Err(_) => true,
            };
        }
        if self.waiting { Action::Pause } else { Action::Continue }
    }
}

impl<V: WaitingRequests> Drop for PauseGuard<V> {
    fn drop(&mut self) {
        if self.waiting
            && let Ok(mut slot) = self.vm.try_borrow_mut()
            && let Some(vm) = slot.as_mut()
        {
            vm.forget(self.context_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_removes_only_the_selected() {
        let mut waiters = Waiters::default();
        waiters.insert(1, "a", 10);
        waiters.insert(2, "b", 20);
        waiters.insert(3, "a", 30);
        let mut taken: Vec<u32> = waiters.take(|w| w.request == "a").into_iter().map(|(id, _)| id).collect();
        taken.sort_unstable();
        assert_eq!(taken, [1, 3]);
        assert!(waiters.contains(2) && waiters.len() == 1);
        assert!(waiters.remove(2).is_some() && waiters.is_empty());
    }
}
