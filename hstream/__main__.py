from hstream.cli import main

main()
