module ustack

go 1.26
