//! What can be a task: the [`Call`] trait.

/// A function that a worker process can run: a named `fn`, registered with
/// [`task!`](crate::task!).
///
/// Every method of `supervisor::Pool` and `supervisor::Process` that runs a task takes
/// `task: F` with `F: Call<M>`. A task is an ordinary function item:
///
/// - it takes one to six arguments and returns one value, all serde types
///   (`Serialize + DeserializeOwned`); a caller passes several arguments as a tuple
///   (`pool.apply(add, (2, 3))` for `fn add(a: u64, b: u64) -> u64`), which is the
///   packed [`Call::Arg`]; a task with no input takes `()`;
/// - a function returning `Result<T, E>` with `E: Display` counts as failed when it
///   returns `Err` (the `Err` value still reaches a typed caller);
/// - it is registered once, next to it, with `supervisor::task!(name);` (or
///   `supervisor::task!("stable-name" => name);`), which puts it in a table every copy
///   of the program has at link time. A worker is a separate process: it cannot be
///   handed code, only the name of a function it already has.
///
/// What cannot be a task:
///
/// - a closure. One that captures something, or a function pointer (`fn(u64) -> u64`),
///   is refused when the program is built (by `cargo build`, not `cargo check`: the
///   check runs as code is generated), with an error that says a task must be a named
///   `fn` registered with `supervisor::task!`: there is nothing a worker could look
///   up, and what a closure captured lives only in this process. A closure that
///   captures nothing compiles (its type says no more than a function's) and fails at
///   once with [`RegistryError::Closure`](crate::registry::RegistryError::Closure).
///   Write a named `fn` and register it; pass what the closure would have captured as
///   an argument.
/// - a function without a `task!` registration: it compiles and fails at once with
///   [`RegistryError::NotRegistered`](crate::registry::RegistryError::NotRegistered),
///   which names the line to add.
///
/// The trait is sealed: it is implemented for every `Fn` of one to six arguments and
/// cannot be implemented elsewhere. `M` only tells the implementations apart (a function
/// item has one arity, so exactly one applies and `M` is inferred); never name it.
///
/// ```
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// supervisor_worker::task!(square);
///
/// fn add(a: u64, b: u64) -> u64 {
///     a + b
/// }
/// supervisor_worker::task!("add-two" => add);
///
/// // `F::Arg` is what a caller passes: the one argument, or a tuple of several.
/// fn run<F: supervisor_worker::Call<M>, M>(f: F, arg: F::Arg) -> F::Out {
///     f.call_packed(arg)
/// }
/// assert_eq!(run(square, 7), 49);
/// assert_eq!(run(add, (2, 3)), 5);
/// assert_eq!(supervisor_worker::registry::by_name("add-two").unwrap().name, "add-two");
/// ```
pub trait Call<M>: sealed::Sealed<M> {
    /// The packed arguments: the one argument, or a tuple of them.
    type Arg;
    /// What the function returns.
    type Out;
    /// Calls the function with the unpacked arguments.
    fn call_packed(&self, arg: Self::Arg) -> Self::Out;
}

mod sealed {
    /// Keeps [`super::Call`] to the implementations below.
    pub trait Sealed<M> {}
}

macro_rules! impl_call {
    ($($a:ident),+) => {
        impl<F, R, $($a),+> sealed::Sealed<($($a,)+)> for F where F: Fn($($a),+) -> R {}

        impl<F, R, $($a),+> Call<($($a,)+)> for F
        where
            F: Fn($($a),+) -> R,
        {
            type Arg = impl_call!(@arg $($a),+);
            type Out = R;
            #[allow(non_snake_case)]
            fn call_packed(&self, arg: Self::Arg) -> R {
                let impl_call!(@pat $($a),+) = arg;
                self($($a),+)
            }
        }
    };
    (@arg $a:ident) => { $a };
    (@arg $($a:ident),+) => { ($($a,)+) };
    (@pat $a:ident) => { $a };
    (@pat $($a:ident),+) => { ($($a,)+) };
}
impl_call!(A);
impl_call!(A, B);
impl_call!(A, B, C);
impl_call!(A, B, C, D);
impl_call!(A, B, C, D, E);
impl_call!(A, B, C, D, E, G);

/// The registry key of task function `F`: its type name. Only a function item (or a
/// closure that captures nothing) has a type of size zero; anything else (a capturing
/// closure, a function pointer) is refused when the program is built, as it can never
/// be found in a worker.
pub fn key_of<F>() -> &'static str {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a task must be a named fn registered with `supervisor::task!(name);`: a closure \
             or a function pointer cannot be a task (pass what a closure captures as an \
             argument)"
        )
    };
    std::any::type_name::<F>()
}
