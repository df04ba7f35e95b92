module gstackbench

go 1.19
