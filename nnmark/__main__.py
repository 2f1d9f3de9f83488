from nnmark.cli import main

main()
