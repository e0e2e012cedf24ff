from nnprune.cli.main import main

main()
