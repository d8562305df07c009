from hstream.cli.main import main

main()
