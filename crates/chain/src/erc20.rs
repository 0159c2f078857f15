//! The ERC-20 interface: call encoding for `transfer`, `balanceOf` and friends, and the
//! `Transfer` / `Approval` events (the exchange simulator decodes `Transfer` logs with
//! [`IERC20::Transfer`]).

// `sol!` generates many items (call structs, return structs, event fields) that carry no doc
// comments of their own; the interface below documents them.
#![allow(missing_docs)]

alloy::sol! {
    /// The standard ERC-20 token interface (EIP-20).
    #[derive(Debug, PartialEq, Eq)]
    interface IERC20 {
        /// Emitted on every movement of tokens, including the mint (from the zero address).
        event Transfer(address indexed from, address indexed to, uint256 value);
        /// Emitted when an allowance is set.
        event Approval(address indexed owner, address indexed spender, uint256 value);

        /// The token's name.
        function name() external view returns (string);
        /// The token's symbol.
        function symbol() external view returns (string);
        /// The number of decimals of one unit.
        function decimals() external view returns (uint8);
        /// Total supply.
        function totalSupply() external view returns (uint256);
        /// Balance of `account`.
        function balanceOf(address account) external view returns (uint256);
        /// Moves `value` from the caller to `to`.
        function transfer(address to, uint256 value) external returns (bool);
        /// Moves `value` from `from` to `to` using the caller's allowance.
        function transferFrom(address from, address to, uint256 value) external returns (bool);
        /// Lets `spender` move up to `value` of the caller's tokens.
        function approve(address spender, uint256 value) external returns (bool);
        /// What `spender` may still move from `owner`.
        function allowance(address owner, address spender) external view returns (uint256);
    }
}
