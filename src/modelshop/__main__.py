from modelshop.cli import main

main()
