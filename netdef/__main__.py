from netdef.cli import console

console()
