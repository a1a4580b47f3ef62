from nbdock.cli import main

main()
