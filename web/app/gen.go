package app

//go:generate go run ./internal/buildwasm
