package keyring

import "errors"

// Errors callers test with errors.Is; returned errors wrap them.
var (
	// ErrNoKey: the tenant has never had a data key (Lookup creates none).
	ErrNoKey = errors.New("keyring: tenant has no data key")
	// ErrForgotten: the tenant's data key was destroyed (ragpipe forget);
	// whatever it sealed is unreadable for good.
	ErrForgotten = errors.New("keyring: tenant forgotten, its data key destroyed")
	// ErrUndecryptable: a sealed text does not open under the tenant's key:
	// moved from another point or tenant, damaged, or sealed under a
	// destroyed key.
	ErrUndecryptable = errors.New("keyring: text does not decrypt")
	// ErrUnknownMasterKey: a data key is wrapped by a master key that the
	// master key file does not hold; the error names the key id.
	ErrUnknownMasterKey = errors.New("keyring: unknown master key")
	// ErrCorrupt: a stored key record does not parse or unwrap.
	ErrCorrupt = errors.New("keyring: corrupt key record")
	// ErrConflict: Import found the tenant with another data key.
	ErrConflict = errors.New("keyring: tenant already has another data key")
)
